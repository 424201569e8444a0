"""Dead letters are bounded and stay compatible (processor/contract/dead_letter_bounds.py, codec.py).

Issue 17: an input as large as the broker accepts was dead-lettered whole, the dead letter went over
the producer's size limit and the send raised. Expectations: the bounded record (its key plus its
encoded value) fits ``max_bytes - HEADROOM``; sizes and SHA-256 are the input's, computed here with
hashlib; the schema only gained optional fields, so records of the first schema
(``schemas/history/dead_letter/v1.avsc``, the released version) and of the new one are read by
readers of either, through Avro schema resolution.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.contract import schemas
from processor.contract.codec import decode_dead_letter, encode_dead_letter
from processor.contract.dead_letter_bounds import HEADROOM, MAX_ERROR_CHARS, MAX_KEY_BYTES, bound_dead_letter
from processor.contract.models import DeadLetter

V1 = json.loads((Path(__file__).resolve().parents[3] / "schemas" / "history" / "dead_letter" / "v1.avsc").read_text())
ADDED = ["key_size", "key_sha256", "value_size", "value_sha256", "truncated"]
MAX = 1_000_000


def parsed(schema: dict) -> object:
    return fastavro.parse_schema(schemas._strip_logical(schema))


def write(schema: dict, record: dict) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed(schema), record)
    return buf.getvalue()


def read(data: bytes, writer: dict, reader: dict) -> dict:
    return fastavro.schemaless_reader(io.BytesIO(data), parsed(writer), parsed(reader))


V1_RECORD = {"source_topic": "lms.user-events.v1", "source_partition": 3, "source_offset": 41, "key": b"s:u",
             "value": b"\x00garbage", "error_code": "DECODE_ERROR", "error": "$: not Avro", "failed_at": 1700000000000}


def test_the_schema_only_gained_optional_fields_at_the_end() -> None:
    """Every first-version field keeps its name and type, in order (a doc may be added); each added
    one is a null-union defaulting to null, with a doc."""
    now = schemas.raw_schema(schemas.DEAD_LETTER)
    assert now["name"] == V1["name"] and now["namespace"] == V1["namespace"]
    undocumented = [{k: v for k, v in f.items() if k != "doc"} for f in now["fields"][: len(V1["fields"])]]
    assert undocumented == V1["fields"]
    added = now["fields"][len(V1["fields"]):]
    assert [f["name"] for f in added] == ADDED
    for f in added:
        assert f["type"][0] == "null" and f["default"] is None and f["doc"], f


def test_a_first_version_record_reads_with_the_new_schema() -> None:
    """Schema resolution (old writer, new reader) fills the added fields with null; so does the
    worker's own decoder, for dead letters already on the topic."""
    old_bytes = write(V1, V1_RECORD)
    now = schemas.raw_schema(schemas.DEAD_LETTER)
    assert read(old_bytes, V1, now) == {**V1_RECORD, **{name: None for name in ADDED}}
    dl = decode_dead_letter(old_bytes)
    assert (dl.key, dl.value, dl.error_code, dl.source_offset) == (b"s:u", b"\x00garbage", "DECODE_ERROR", 41)
    assert (dl.key_size, dl.key_sha256, dl.value_size, dl.value_sha256, dl.truncated) == (None,) * 5


def test_a_new_record_reads_with_the_first_schema() -> None:
    """A consumer still on the first schema (old reader, new writer) reads every field it knows."""
    dl = bound_dead_letter(DeadLetter("lms.user-events.v1", 3, 41, b"s:u", b"v" * 2_000_000, "LIMIT_EXCEEDED",
                                      "too big", 1700000000000), MAX)
    got = read(encode_dead_letter(dl), schemas.raw_schema(schemas.DEAD_LETTER), V1)
    assert got == {"source_topic": "lms.user-events.v1", "source_partition": 3, "source_offset": 41,
                   "key": b"s:u", "value": dl.value, "error_code": "LIMIT_EXCEEDED", "error": "too big",
                   "failed_at": 1700000000000}


def test_new_fields_round_trip() -> None:
    dl = DeadLetter("t", 1, 2, b"k", b"v", "DECODE_ERROR", "e", 3, 10, "ab" * 32, 20, "cd" * 32, ("value",))
    assert decode_dead_letter(encode_dead_letter(dl)) == dl


def test_garbage_is_not_read_as_a_first_version_record() -> None:
    """The fallback to the first schema needs the whole buffer to be one such record."""
    from processor.contract.exceptions import ContractError

    with pytest.raises(ContractError):
        decode_dead_letter(write(V1, V1_RECORD) + b"\x00")


def test_a_small_input_is_kept_whole_with_its_size_and_hash() -> None:
    dl = DeadLetter("t", 0, 5, b"site:user", b"\x01\x02", "DECODE_ERROR", "bad", 9)
    out = bound_dead_letter(dl, MAX)
    assert (out.key, out.value, out.error, out.truncated) == (b"site:user", b"\x01\x02", "bad", ())
    assert (out.key_size, out.value_size) == (9, 2)
    assert out.key_sha256 == hashlib.sha256(b"site:user").hexdigest()
    assert out.value_sha256 == hashlib.sha256(b"\x01\x02").hexdigest()


def test_a_tombstone_without_key_has_no_sizes() -> None:
    out = bound_dead_letter(DeadLetter("t", 0, 5, None, None, "DECODE_ERROR", "tombstone", 9), MAX)
    assert (out.key_size, out.key_sha256, out.value_size, out.value_sha256, out.truncated) == (
        None, None, None, None, ())


def test_a_value_over_the_limit_is_cut_to_fit_and_described_whole() -> None:
    """The ~1 MB event of the issue, and a larger one: cut to a prefix that fits."""
    for size in (999_947, 5_000_000):
        value = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
        out = bound_dead_letter(DeadLetter("t", 0, 5, b"site:user", value, "LIMIT_EXCEEDED", "big", 9), MAX)
        encoded = encode_dead_letter(out)
        assert len(encoded) + len(out.key) <= MAX - HEADROOM
        assert len(encoded) + len(out.key) > MAX - HEADROOM - 64  # and uses the room it has
        assert out.truncated == ("value",)
        assert value.startswith(out.value) and len(out.value) < size
        assert (out.value_size, out.value_sha256) == (size, hashlib.sha256(value).hexdigest())


def test_a_huge_key_and_error_are_cut() -> None:
    key = b"k" * 700_000
    out = bound_dead_letter(DeadLetter("t", 0, 5, key, b"v" * 990_000, "DECODE_ERROR", "x" * 50_000, 9), MAX)
    assert out.truncated == ("key", "value", "error")
    assert out.key == key[:MAX_KEY_BYTES] and (out.key_size, out.key_sha256) == (700_000, hashlib.sha256(key).hexdigest())
    assert len(out.error) == MAX_ERROR_CHARS and out.error.startswith("x" * 1000)
    assert len(encode_dead_letter(out)) + len(out.key) <= MAX - HEADROOM


def test_an_error_text_avro_cannot_write_is_escaped() -> None:
    """A lone surrogate in an exception's text would make the dead letter unwritable."""
    out = bound_dead_letter(DeadLetter("t", 0, 5, None, b"v", "PROCESSING_ERROR", "bad \udc80 key", 9), MAX)
    assert decode_dead_letter(encode_dead_letter(out)).error == "bad \\udc80 key"


def test_a_limit_too_small_for_any_dead_letter_is_refused() -> None:
    with pytest.raises(ValueError):
        bound_dead_letter(DeadLetter("t", 0, 5, None, b"v", "DECODE_ERROR", "e", 9), 1000)


@settings(max_examples=60, deadline=None)
@given(key=st.one_of(st.none(), st.integers(0, 20_000)), value=st.one_of(st.none(), st.integers(0, 400_000)),
       error=st.text(max_size=9000), max_bytes=st.integers(64 * 1024, 300_000))
def test_any_dead_letter_fits_its_limit(key, value, error, max_bytes) -> None:
    k = None if key is None else b"k" * key
    v = None if value is None else b"v" * value
    out = bound_dead_letter(DeadLetter("lms.user-events.v1", 7, 2**40, k, v, "LIMIT_EXCEEDED", error, 2**41), max_bytes)
    assert len(encode_dead_letter(out)) + len(out.key or b"") <= max_bytes - HEADROOM
    assert (out.key_size, out.value_size) == (key, value)
    assert ("value" in out.truncated) == (v is not None and out.value != v)
    assert decode_dead_letter(encode_dead_letter(out)) == out
