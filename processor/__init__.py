"""Segment automation stream processor for a Moodle-based LMS.

Data path (file names follow it):
  contract/   wire codecs and validation (Avro via fastavro)  -- pure
  rules/      rule language: fields, operators, compiler      -- pure
  catalog/    site catalog, command authorization and apply   -- pure
  membership/ profile merge, membership decision and diff     -- pure
  state/      stored user state codec and table keys          -- pure
  app.py      Faust wiring (the only module that imports faust)
"""

__version__ = "0.1.0"
