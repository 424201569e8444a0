"""A batch of writes over a store, readable before it is committed (pure).

The reader indexes a poll's records in one batch and commits it atomically together with the
positions it reached. Within the batch a later record must see what an earlier one wrote (a
counter, a user's oldest change), so reads go through the pending writes first.
"""

from __future__ import annotations

from typing import Any, Iterator

_GONE = object()


class Overlay:
    def __init__(self, db: Any) -> None:
        self.db = db
        self._w: dict[bytes, Any] = {}  # key -> value, or _GONE for a delete

    def get(self, key: bytes) -> bytes | None:
        v = self._w.get(key)
        if v is None:
            return self.db.get(key)
        return None if v is _GONE else v

    def put(self, key: bytes, value: bytes) -> None:
        self._w[key] = value

    def delete(self, key: bytes) -> None:
        self._w[key] = _GONE

    def keys(self, prefix: bytes) -> Iterator[bytes]:
        """Keys starting with ``prefix`` in order, pending writes included, pending deletes not."""
        pending = sorted(k for k, v in self._w.items() if k.startswith(prefix) and v is not _GONE)
        i = 0
        for k in self.db.keys(from_key=prefix):
            if not k.startswith(prefix):
                break
            while i < len(pending) and pending[i] < k:
                yield pending[i]
                i += 1
            if i < len(pending) and pending[i] == k:
                i += 1
            if self._w.get(k) is _GONE:
                continue
            yield k
        yield from pending[i:]

    def ops(self) -> list[tuple[bytes, bytes | None]]:
        """The pending writes as (key, value) with None for a delete, in key order."""
        return [(k, None if v is _GONE else v) for k, v in sorted(self._w.items())]

    def __len__(self) -> int:
        return len(self._w)
