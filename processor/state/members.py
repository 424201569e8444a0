"""The members tab's index: ``M`` keys derived from user states, never changelogged.

Every member of a segment has an entry ``member_key(site, segment, user) -> {since, rules, cause}``
in its partition's local RocksDB, so the console lists a segment's members with one prefix scan.
The entries are a pure function of the stored user states: the worker writes them locally when
it changes a state, and derives them again when Faust restores states from the changelog (a
takeover, a standby, a fresh state dir). Keeping them out of the changelog halves the records
produced per membership change (state + output, instead of state + index entry + output).
"""

from __future__ import annotations

import msgspec

from processor.state.keys import USER, member_key
from processor.state.user_state import Fact, UserState, decode_state

Write = tuple[bytes, "bytes | None"]  # (key, value); None deletes
_JSON = msgspec.json.Encoder()  # compact JSON, as json.dumps(..., separators=(",", ":")) but a C call


def member_entry(since: int, matched_rule_ids: tuple[str, ...] | list[str], cause_kind: str) -> bytes:
    """Members-tab entry: since when, which rules matched, what caused it."""
    return _JSON.encode({"since": since, "rules": list(matched_rule_ids), "cause": cause_kind})


def fact_entry(f: Fact) -> bytes:
    return member_entry(f.emitted_at, f.matched_rule_ids, f.cause_kind)


def member_writes(old: UserState | None, new: UserState | None) -> list[Write]:
    """The index writes that take the entries of ``old`` to those of ``new`` (same user)."""
    st = new or old
    if st is None:
        return []
    was = {s: f for s, f in old.facts.items() if f.member} if old is not None else {}
    now = {s: f for s, f in new.facts.items() if f.member} if new is not None else {}
    out: list[Write] = []
    for seg in sorted(was.keys() - now.keys()):
        out.append((member_key(st.site_id, seg, st.user_id), None))
    for seg in sorted(now):
        f = now[seg]
        prev = was.get(seg)
        if prev is None or (prev.emitted_at, prev.matched_rule_ids, prev.cause_kind) != (
                f.emitted_at, f.matched_rule_ids, f.cause_kind):
            out.append((member_key(st.site_id, seg, st.user_id), fact_entry(f)))
    return out


def restored_writes(key: bytes, old_raw: bytes | None, new_raw: bytes | None) -> list[Write]:
    """Index writes for one restored changelog record (non-user keys derive nothing)."""
    if not key.startswith(USER) or old_raw == new_raw:
        return []
    return member_writes(decode_state(old_raw) if old_raw else None, decode_state(new_raw) if new_raw else None)
