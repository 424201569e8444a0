"""Bound a dead letter to the dead-letter producer's message size limit (pure: no Kafka).

A dead letter carries the refused input, but an input can be as large as the broker accepts
(the embedded test broker takes produce requests up to 256 MiB; Kafka its ``message.max.bytes``), far above the
limit of the producer that writes dead letters (librdkafka's ``message.max.bytes``, 1,000,000 by
default). The unbounded record could not be sent at all: the send raised inside the worker's
handler. :func:`bound_dead_letter` keeps every field that fits and cuts the rest:

* the key to :data:`MAX_KEY_BYTES` (it is also the dead letter's Kafka key, so it counts twice);
* the error text to :data:`MAX_ERROR_CHARS` (characters Avro cannot write escaped as ``\\udcxx``);
* the value to what is left of ``max_bytes`` after the rest of the record and
  :data:`HEADROOM` (record, batch and request headers).

The whole input's key and value sizes and SHA-256 are recorded in any case, and ``truncated``
names the fields that were cut, so a cut dead letter still identifies its input.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

from processor.contract.codec import encode_dead_letter
from processor.contract.models import DeadLetter

HEADROOM = 16 * 1024  # bytes kept free under max_bytes for Kafka's record/batch/request framing
MAX_KEY_BYTES = 4096
MAX_ERROR_CHARS = 4000
MIN_MAX_BYTES = 64 * 1024  # below this a dead letter could not hold a useful prefix of anything
_CUT_MARK = " ... [cut]"


def _sha256(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


def bound_dead_letter(dl: DeadLetter, max_bytes: int) -> DeadLetter:
    """``dl`` with sizes and SHA-256 of its key and value filled in, cut so that its key plus its
    encoded value are at most ``max_bytes - HEADROOM`` bytes (see the module docstring)."""
    if max_bytes < MIN_MAX_BYTES:
        raise ValueError(f"max_bytes is {max_bytes}; a dead letter needs at least {MIN_MAX_BYTES}")
    cut: list[str] = []
    # A lone surrogate (from some exception's text) is not UTF-8: Avro could not write the string.
    key, value, error = dl.key, dl.value, dl.error.encode("utf-8", "backslashreplace").decode("utf-8")
    if key is not None and len(key) > MAX_KEY_BYTES:
        key = key[:MAX_KEY_BYTES]
        cut.append("key")
    if len(error) > MAX_ERROR_CHARS:
        error = error[: MAX_ERROR_CHARS - len(_CUT_MARK)] + _CUT_MARK
        cut.append("error")
    out = replace(dl, key=key, error=error, key_size=None if dl.key is None else len(dl.key),
                  key_sha256=_sha256(dl.key), value_size=None if dl.value is None else len(dl.value),
                  value_sha256=_sha256(dl.value))
    budget = max_bytes - HEADROOM - len(key or b"")
    if value is not None:
        # Everything but the value's bytes, with "value" already named among the cut fields (the
        # array's size does not depend on the order), plus 10 bytes: the longest varint of its length.
        rest = len(encode_dead_letter(replace(out, value=b"", truncated=tuple(cut + ["value"])))) + 10
        if rest + len(value) > budget:
            value = value[: max(0, budget - rest)]
            cut.insert(1 if "key" in cut else 0, "value")
    out = replace(out, value=value, truncated=tuple(cut))
    return out
