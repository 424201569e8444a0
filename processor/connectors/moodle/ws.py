"""Moodle's REST web services: request encoding, error semantics and retries.

Every call is ``POST {MOODLE_URL}/webservice/rest/server.php`` with ``wstoken``, ``wsfunction``,
``moodlewsrestformat=json`` and the function's parameters encoded the way PHP parses a form:
nested arrays as ``members[0][cohorttype][type]=idnumber`` (webservice/rest/locallib.php,
``webservice_rest_server::parse_request``: ``array_merge($_GET, $_POST)``).

Moodle answers errors with **HTTP 200** and ``{"exception", "errorcode", "message"}``
(``webservice_rest_server::generate_error``), so every body is checked. Errors fall in three
classes, which decide what the caller does:

* :class:`MoodleFatal`: the service cannot work until an admin fixes a setting (bad token,
  function not in the external service, missing capability, REST protocol disabled). The
  message says which capability or setting.
* :class:`MoodleRecordError`: this request's data was refused (a cohort or user that does not
  exist, a value Moodle's parameter validation rejects). The caller splits the batch or
  dead-letters the record.
* :class:`MoodleUnavailable`: network errors, time-outs, 5xx, maintenance mode. Retried with
  exponential backoff (tenacity) for ``retry_for`` seconds, then raised.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import requests
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_delay, wait_exponential_jitter

from processor.errors import ProcessorError

log = logging.getLogger("processor.connectors.moodle")

ENDPOINT = "/webservice/rest/server.php"

# The capability each function we call checks (cohort/externallib.php, user/externallib.php and
# user/lib.php user_get_user_details): named in the message when Moodle answers nopermissions.
CAPABILITY = {
    "core_cohort_add_cohort_members": "moodle/cohort:assign",
    "core_cohort_delete_cohort_members": "moodle/cohort:assign",
    "core_cohort_get_cohorts": "moodle/cohort:view",
    "core_cohort_search_cohorts": "moodle/cohort:view",
    "core_cohort_get_cohort_members": "moodle/cohort:view",
    "core_user_get_users_by_field": "moodle/user:viewdetails (and moodle/user:viewalldetails for username, "
                                    "idnumber, department, institution)",
    "core_user_get_users": "moodle/user:viewdetails (and moodle/user:viewalldetails)",
}

SERVICE_HELP = ("Site administration > Server > Web services > External services: add the function to the "
                "service of this token, enable the service and, if it is restricted, allow its user")


class MoodleError(ProcessorError):
    """An error answered by (or on the way to) Moodle; ``errorcode`` is Moodle's own code."""

    def __init__(self, code: str, message: str, function: str, errorcode: str = "", exception: str = "") -> None:
        super().__init__(code, message, f"$.{function}" if function else "$")
        self.function = function
        self.errorcode = errorcode
        self.exception = exception


class MoodleFatal(MoodleError):
    """The connector cannot work until an admin changes a setting in Moodle: stop."""


class MoodleRecordError(MoodleError):
    """Moodle refused the data of this request (e.g. a missing cohort or user): split or dead-letter."""


class MoodleUnavailable(MoodleError):
    """Moodle could not be reached or answered 5xx/maintenance for longer than the retry budget."""


class _Transient(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def php_form(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Flatten ``params`` into form fields the way PHP rebuilds ``$_POST`` arrays.

    ``{"members": [{"cohortid": 3, "userid": 7}]}`` -> ``[("members[0][cohortid]", "3"),
    ("members[0][userid]", "7")]``. Booleans are ``1``/``0`` (Moodle's PARAM_BOOL); ``None`` and
    empty lists send nothing (a form cannot carry an empty array: Moodle then uses the default).
    """
    out: list[tuple[str, str]] = []

    def walk(value: Any, name: str) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(v, f"{name}[{k}]" if name else str(k))
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(v, f"{name}[{i}]")
        elif value is None:
            return
        elif isinstance(value, bool):
            out.append((name, "1" if value else "0"))
        else:
            out.append((name, str(value)))

    walk(params, "")
    return out


def classify(function: str, body: Mapping[str, Any]) -> Exception:
    """The exception for Moodle's error body ``{exception, errorcode, message[, debuginfo]}``."""
    code = str(body.get("errorcode") or "")
    exc = str(body.get("exception") or "")
    msg = str(body.get("message") or "")
    if body.get("debuginfo"):
        msg = f"{msg} ({body['debuginfo']})"
    said = f"Moodle answered {function}: {exc}/{code}: {msg}"
    if code == "invalidtoken":
        return MoodleFatal("MOODLE_INVALID_TOKEN", f"{said}. MOODLE_TOKEN is not a web-service token of this "
                           "site (Site administration > Server > Web services > Manage tokens)", function, code, exc)
    if code == "accessexception":
        return MoodleFatal("MOODLE_ACCESS", f"{said}. {SERVICE_HELP}; also check the token's validity, IP "
                           "restriction, and that the user has webservice/rest:use", function, code, exc)
    if code == "nopermissions" or exc == "required_capability_exception":
        cap = CAPABILITY.get(function, "the capability the function checks")
        return MoodleFatal("MOODLE_CAPABILITY", f"{said}. The web-service user needs {cap} in the system "
                           "context (Site administration > Users > Permissions > Define roles)", function, code, exc)
    if code in ("restrictedcontextexception", "usernotconfirmed", "wsaccessuserunconfirmed", "passwordisexpired",
                "servicenotavailable", "servicerequireslogin"):
        return MoodleFatal("MOODLE_ACCESS", f"{said}. Check the web-service user and token settings",
                           function, code, exc)
    if code in ("invalidrecord", "invalidrecordunknown") and "external_functions" in msg:
        return MoodleFatal("MOODLE_FUNCTION_MISSING", f"{said}. {function} is not installed on this Moodle",
                           function, code, exc)
    if code == "sitemaintenance":
        return _Transient("maintenance", said)
    return MoodleRecordError("MOODLE_REFUSED", said, function, code, exc)


@dataclass
class MoodleClient:
    """A token-authenticated REST client for one Moodle site (thread-unsafe: one per thread).

    ``on_call(function, seconds, outcome)`` and ``on_retry(function, reason)`` feed metrics.
    """

    url: str
    token: str
    timeout: float = 60.0
    retry_for: float = 300.0  # seconds of retrying a transient failure before MoodleUnavailable
    max_backoff: float = 30.0
    on_call: Callable[[str, float, str], None] | None = None
    on_retry: Callable[[str, str], None] | None = None
    session: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")
        if self.url.endswith(ENDPOINT):
            self.url = self.url[: -len(ENDPOINT)]
        if not self.url.startswith(("http://", "https://")):
            raise MoodleFatal("MOODLE_CONFIG", f"MOODLE_URL must be http(s)://..., got {self.url!r}", "")
        if not self.token:
            raise MoodleFatal("MOODLE_CONFIG", "MOODLE_TOKEN is empty: create a web-service token for the "
                              "connector's user (Site administration > Server > Web services > Manage tokens)", "")

    def call(self, function: str, **params: Any) -> Any:
        """Call ``function`` and return its decoded JSON answer; raise one of the classes above."""
        started = time.perf_counter()

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            reason = exc.reason if isinstance(exc, _Transient) else "error"
            log.warning("moodle %s: %s; retry %d in %.1fs", function, exc, state.attempt_number,
                        state.next_action.sleep if state.next_action else 0)
            if self.on_retry:
                self.on_retry(function, reason)

        retrying = Retrying(retry=retry_if_exception_type(_Transient), reraise=True, before_sleep=before_sleep,
                            wait=wait_exponential_jitter(multiplier=0.2, max=self.max_backoff, jitter=0.3),
                            stop=stop_after_delay(self.retry_for))
        outcome = "ok"
        try:
            return retrying(self._once, function, params)
        except _Transient as exc:
            outcome = "unavailable"
            raise MoodleUnavailable("MOODLE_UNAVAILABLE", f"{exc} (gave up after {self.retry_for:g}s of retries)",
                                    function) from None
        except MoodleFatal:
            outcome = "fatal"
            raise
        except MoodleRecordError:
            outcome = "refused"
            raise
        finally:
            if self.on_call:
                self.on_call(function, time.perf_counter() - started, outcome)

    def _once(self, function: str, params: Mapping[str, Any]) -> Any:
        form = [("wstoken", self.token), ("wsfunction", function), ("moodlewsrestformat", "json"),
                *php_form(params)]
        try:
            resp = self.session.post(self.url + ENDPOINT, data=form, timeout=self.timeout)
        except requests.Timeout as exc:
            raise _Transient("timeout", f"{function}: no answer within {self.timeout:g}s ({exc})") from None
        except requests.ConnectionError as exc:
            raise _Transient("network", f"{function}: cannot reach {self.url} ({exc})") from None
        if resp.status_code >= 500 or resp.status_code == 429:
            raise _Transient("http_5xx", f"{function}: HTTP {resp.status_code} from {self.url}")
        if resp.status_code == 403:
            raise MoodleFatal("MOODLE_ACCESS", f"{function}: HTTP 403 from {self.url}{ENDPOINT}: enable web "
                              "services (Site administration > Advanced features) and the REST protocol "
                              "(Site administration > Server > Web services > Manage protocols)", function)
        if resp.status_code != 200:
            raise MoodleFatal("MOODLE_CONFIG", f"{function}: HTTP {resp.status_code} from {self.url}{ENDPOINT}; "
                              "is MOODLE_URL the site's root URL?", function)
        try:
            body = resp.json()
        except ValueError:
            head = resp.text[:200].strip()
            raise MoodleFatal("MOODLE_CONFIG", f"{function}: the answer is not JSON ({head!r}); is MOODLE_URL "
                              "the site's root URL and the REST protocol enabled?", function) from None
        if isinstance(body, dict) and "exception" in body and "errorcode" in body:
            err = classify(function, body)
            raise err
        return body

    def close(self) -> None:
        self.session.close()


def chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
