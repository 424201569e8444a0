"""The web-service client against the Moodle double over HTTP: encoding, error classes, retries."""

from __future__ import annotations

import pytest

from processor.connectors.moodle.ws import MoodleClient, MoodleFatal, MoodleRecordError, MoodleUnavailable, php_form
from tests.support.moodle_double import CAP_ASSIGN, CAP_MANAGE, MoodleDouble


def client(moodle: MoodleDouble, **kw: object) -> MoodleClient:
    return MoodleClient(moodle.url, moodle.token, **kw)  # type: ignore[arg-type]


def test_php_form_nests_arrays_like_moodles_rest_examples() -> None:
    """members[0][cohorttype][type]=idnumber, as Moodle's REST documentation writes it."""
    form = php_form({"members": [{"cohorttype": {"type": "idnumber", "value": "sales"},
                                  "usertype": {"type": "id", "value": 7}}], "flag": True, "none": None, "empty": []})
    assert form == [("members[0][cohorttype][type]", "idnumber"), ("members[0][cohorttype][value]", "sales"),
                    ("members[0][usertype][type]", "id"), ("members[0][usertype][value]", "7"), ("flag", "1")]


def test_a_call_reaches_moodle_with_the_documented_encoding(moodle: MoodleDouble) -> None:
    moodle.add_cohort("sales")
    alice = moodle.add_user("alice")
    res = client(moodle).call("core_cohort_add_cohort_members", members=[
        {"cohorttype": {"type": "idnumber", "value": "sales"}, "usertype": {"type": "id", "value": str(alice.id)}}])
    assert res == {"warnings": []}
    assert moodle.member_ids("sales") == {alice.id}


def test_invalid_token_is_fatal_and_says_where_to_fix_it(moodle: MoodleDouble) -> None:
    with pytest.raises(MoodleFatal) as e:
        MoodleClient(moodle.url, "wrong-token").call("core_cohort_get_cohorts")
    assert e.value.code == "MOODLE_INVALID_TOKEN" and "Manage tokens" in e.value.message
    assert moodle.errors()[0].error == "invalidtoken"


def test_function_missing_from_the_service_is_fatal(moodle: MoodleDouble) -> None:
    moodle.service_functions.discard("core_cohort_get_cohorts")
    with pytest.raises(MoodleFatal) as e:
        client(moodle).call("core_cohort_get_cohorts")
    assert e.value.code == "MOODLE_ACCESS" and "External services" in e.value.message


def test_missing_capability_is_fatal_and_names_the_capability(moodle: MoodleDouble) -> None:
    moodle.capabilities -= {CAP_ASSIGN, CAP_MANAGE}
    moodle.add_cohort("sales")
    alice = moodle.add_user("alice")
    with pytest.raises(MoodleFatal) as e:
        client(moodle).call("core_cohort_add_cohort_members", members=[
            {"cohorttype": {"type": "idnumber", "value": "sales"}, "usertype": {"type": "id", "value": alice.id}}])
    assert e.value.code == "MOODLE_CAPABILITY" and "moodle/cohort:assign" in e.value.message
    assert moodle.member_ids("sales") == set()


def test_invalid_parameters_are_a_record_error(moodle: MoodleDouble) -> None:
    """Moodle's own parameter validation (a non-integer id) refuses the request's data."""
    with pytest.raises(MoodleRecordError) as e:
        client(moodle).call("core_cohort_delete_cohort_members", members=[{"cohortid": "x", "userid": 1}])
    assert e.value.errorcode == "invalidparameter"


def test_5xx_and_dropped_connections_are_retried(moodle: MoodleDouble) -> None:
    moodle.add_cohort("sales")
    retries: list[str] = []
    moodle.fail_next(2, 503)
    moodle.drop_next(1)
    c = client(moodle, on_retry=lambda f, reason: retries.append(reason))
    assert [r["idnumber"] for r in c.call("core_cohort_get_cohorts")] == ["sales"]
    assert retries == ["http_5xx", "http_5xx", "network"]


def test_retries_give_up_after_the_budget(moodle: MoodleDouble) -> None:
    moodle.fail_next(1000, 502)
    with pytest.raises(MoodleUnavailable):
        client(moodle, retry_for=1.0, max_backoff=0.2).call("core_cohort_get_cohorts")


def test_rest_protocol_disabled_is_fatal(moodle: MoodleDouble) -> None:
    moodle.rest_enabled = False
    with pytest.raises(MoodleFatal) as e:
        client(moodle).call("core_cohort_get_cohorts")
    assert "Manage protocols" in e.value.message


def test_a_url_that_is_not_moodle_is_fatal(moodle: MoodleDouble) -> None:
    with pytest.raises(MoodleFatal) as e:
        MoodleClient(moodle.url + "/some/where", moodle.token).call("core_cohort_get_cohorts")
    assert e.value.code == "MOODLE_CONFIG"
