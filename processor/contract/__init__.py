"""Wire contract: Avro schemas in ``schemas/``, codecs and validation (pure)."""
