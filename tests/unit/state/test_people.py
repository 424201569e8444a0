"""processor/state/people.py: names and e-mail from a profile, and what a member search matches.

The expected answers are written out by hand from docs/api.md ("Members: names, search, CSV
export"), and, for generated names, by the documented rule spelled out plainly in ``reference``
(the module takes shortcuts for speed; they must not change an answer).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.state.people import MAX_QUERY_CHARS, Query, display_name, email, person

ADA = {"firstname": "Ada", "lastname": "Lovelace", "email": "Ada@Example.org", "department": "Maths"}


def test_person_is_moodles_default_full_name_and_the_email() -> None:
    assert person(ADA) == {"name": "Ada Lovelace", "email": "Ada@Example.org"}
    assert person({"firstname": "  Mary \t Ann ", "lastname": ""}) == {"name": "Mary Ann", "email": None}
    assert person({"lastname": "Byron"}) == {"name": "Byron", "email": None}
    assert person({}) == {"name": None, "email": None}
    # a value that is not text (a bad feed) is no name
    assert display_name({"firstname": 42, "lastname": ["x"]}) is None
    assert email({"email": True}) is None


def q(text: str) -> Query:
    parsed = Query.parse(text)
    assert parsed is not None
    return parsed


@pytest.mark.parametrize("term", [
    "ada", "ADA", "  Ada  ", "love", "Lovelace", "ada lov", "ADA   LOVELACE", "ada@", "ada@example.org", "u0", "U07",
])
def test_a_prefix_of_id_first_last_full_name_or_email_matches(term: str) -> None:
    assert q(term).matches("u07", ADA)


@pytest.mark.parametrize("term", [
    "velace",  # not a prefix
    "lovelace ada",  # last name first
    "example.org",  # the domain alone
    "ada lovelace x",  # longer than the full name
    "u08", "maths",  # another id; a field that is not searched
])
def test_anything_else_does_not(term: str) -> None:
    assert not q(term).matches("u07", ADA)


def test_case_folding_and_whitespace_in_values() -> None:
    assert q("strasse").matches("x", {"lastname": "Straße"})
    assert q("ÉMILE").matches("x", {"firstname": "émile"})
    assert q("mary ann s").matches("x", {"firstname": "Mary\tAnn", "lastname": "Smith"})
    assert q("smith").matches("x", {"firstname": "", "lastname": " Smith"})
    assert q("x").matches("X-1", {})  # ids too


def test_no_term_and_a_too_long_term() -> None:
    assert Query.parse(None) is None and Query.parse("") is None and Query.parse(" \t ") is None
    assert Query.parse("a" * MAX_QUERY_CHARS) is not None
    with pytest.raises(ValueError, match="at most 255"):
        Query.parse("a" * (MAX_QUERY_CHARS + 1))


def reference(term: str, user_id: str, profile: dict[str, object]) -> bool:
    """docs/api.md's rule, spelled out plainly: fold (collapse whitespace, casefold) and compare."""
    def fold(v: object) -> str:
        return " ".join(v.split()).casefold() if isinstance(v, str) else ""

    t = fold(term)
    first, last = fold(profile.get("firstname")), fold(profile.get("lastname"))
    full = " ".join(x for x in (first, last) if x)
    return any(c.startswith(t) for c in (fold(user_id), first, last, full, fold(profile.get("email"))))


text = st.text(alphabet=st.sampled_from("aAbBßẞKİıéÉ \t\u00a0-@.1"), max_size=8)


@settings(max_examples=1500, deadline=None)
@given(term=text.filter(lambda t: t.strip()), uid=text.filter(lambda t: t.strip()), first=text, last=text,
       mail=st.one_of(text, st.integers(), st.none()))
def test_matches_is_the_documented_rule(term: str, uid: str, first: str, last: str, mail: object) -> None:
    profile = {"firstname": first, "lastname": last, "email": mail}
    assert q(term).matches(uid, profile) == reference(term, uid, profile)


@settings(max_examples=300, deadline=None)
@given(first=text, last=text, take=st.integers(1, 8))
def test_every_prefix_of_a_name_finds_it(first: str, last: str, take: int) -> None:
    profile = {"firstname": first, "lastname": last}
    for source in (first, last, f"{first} {last}"):
        term = source.strip()[:take]
        if term.strip():
            flipped = "".join(c.upper() if c.isascii() else c for c in term)  # ASCII case flipped
            assert q(flipped).matches("id", profile)
