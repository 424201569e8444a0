"""Errors raised while decoding or validating wire messages."""

from __future__ import annotations

from processor.errors import ProcessorError


class ContractError(ProcessorError):
    """A message violates the wire contract; it goes to the dead-letter topic.

    Codes: DECODE_ERROR (not valid Avro for the schema), TRAILING_BYTES,
    EMPTY_ID, INVALID_ID (an id outside its character set), KEY_MISMATCH, LIMIT_EXCEEDED, MISSING_KEY;
    with a Schema Registry: UNKNOWN_SCHEMA_ID (the registry has no schema of the message's id),
    INCOMPATIBLE_SCHEMA (the writer's schema does not resolve to ours).
    """
