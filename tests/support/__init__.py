"""Test support code: doubles of external systems that cannot run here (see moodle_double)."""
