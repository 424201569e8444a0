"""A faithful double of Moodle's REST web services, for the functions the connector calls.

Moodle cannot run here, so this is a real HTTP server (``http.server`` in a thread) that
answers ``POST /webservice/rest/server.php`` the way Moodle does. Every behaviour below was read
from Moodle's source (repository ``moodle/moodle``); each handler cites the file and function.
It is a double of an external system, not a mock of our code: tests drive our connector
against it over HTTP and then inspect the double's state (cohorts, members) and its call log.

Server-level behaviour (webservice/rest/locallib.php ``webservice_rest_server``, webservice/lib.php
``webservice_base_server``):

* parameters come from ``array_merge($_GET, $_POST)``; PHP rebuilds nested arrays from
  ``a[0][b]=c`` keys (``parse_request``);
* ``moodlewsrestformat=json`` selects JSON, anything else XML (``parse_request``);
* every error is answered with **HTTP 200** and ``{"exception", "errorcode", "message"}``, plus
  ``debuginfo`` only when the site has debugging on (``generate_error``);
* an unknown token: ``moodle_exception`` / ``invalidtoken`` / "Invalid token - token not found"
  (``authenticate_by_token``);
* a function that is not installed: ``dml_missing_record_exception`` for table
  ``external_functions`` (lib/external/classes/external_api.php ``external_function_info``,
  MUST_EXIST); one that is not in the token's service: ``webservice_access_exception`` /
  ``accessexception`` / "Access control exception" (``load_function_info``);
* the REST protocol disabled: HTTP 403 with an empty body (webservice/rest/server.php);
* parameters are checked against the function's description before it runs
  (external_api::validate_parameters): missing required keys, unexpected keys and values that
  change when cleaned (PARAM_INT, PARAM_ALPHA, ...) raise ``invalid_parameter_exception`` /
  ``invalidparameter`` / "Invalid parameter value detected" with the detail in ``debuginfo``;
* functions that start a delegated transaction roll back completely when they throw
  (``exception_handler`` -> ``abort_all_db_transactions``).

Fault injection for the tests: ``delay`` (seconds per call), ``fail_next(n, status)`` (answer
HTTP ``status`` to the next n calls) and ``drop_next(n)`` (close the connection without an answer).
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qsl, urlsplit

SYSTEM_CONTEXT = 1
CAP_ASSIGN = "moodle/cohort:assign"
CAP_MANAGE = "moodle/cohort:manage"
CAP_VIEW = "moodle/cohort:view"
CAP_VIEWDETAILS = "moodle/user:viewdetails"
CAP_VIEWALLDETAILS = "moodle/user:viewalldetails"
CAP_VIEWHIDDEN = "moodle/user:viewhiddendetails"
CAP_FULLNAMES = "moodle/site:viewfullnames"
DEFAULT_CAPS = frozenset({CAP_ASSIGN, CAP_VIEW, CAP_VIEWDETAILS, CAP_VIEWALLDETAILS, CAP_VIEWHIDDEN, CAP_FULLNAMES})
# lang/en/role.php: the capability names required_capability_exception puts in its message
CAP_NAMES = {CAP_ASSIGN: "Add and remove cohort members", CAP_VIEW: "View site cohorts"}
PLUGIN_FUNCTION = "local_segmentsync_get_profile_fields"


class MoodleException(Exception):
    """A PHP exception as webservice_rest_server::generate_error serialises it."""

    def __init__(self, exception: str, errorcode: str, message: str, debuginfo: str | None = None) -> None:
        super().__init__(message)
        self.exception, self.errorcode, self.message, self.debuginfo = exception, errorcode, message, debuginfo


def invalid_parameter(debuginfo: str) -> MoodleException:
    """lib/setuplib.php invalid_parameter_exception: errorcode invalidparameter (lang/en/debug.php)."""
    return MoodleException("invalid_parameter_exception", "invalidparameter", "Invalid parameter value detected",
                           debuginfo)


def missing_record(table: str) -> MoodleException:
    """lib/dml/moodle_database.php dml_missing_record_exception: errorcode invalidrecord (lang/en/error.php)."""
    return MoodleException("dml_missing_record_exception", "invalidrecord",
                           f"Can't find data record in database table {table}.", f"SELECT * FROM {{{table}}} ...")


def required_capability(cap: str) -> MoodleException:
    """lib/classes/exception/required_capability_exception.php: errorcode nopermissions (lang/en/error.php)."""
    name = CAP_NAMES.get(cap, cap)
    return MoodleException("required_capability_exception", "nopermissions",
                           f"Sorry, but you do not currently have permissions to do that ({name}).", cap)


# ------------------------------------------------------------------ parameter descriptions
# A small model of core_external's external_value / external_single_structure /
# external_multiple_structure and of validate_param's cleaning (lib/moodlelib.php clean_param).

REQUIRED, DEFAULT, OPTIONAL = 1, 0, 2


@dataclass(frozen=True)
class Value:
    type: str  # int, raw, alpha, alphanumext, alphanum, bool
    required: int = REQUIRED
    default: Any = None


@dataclass(frozen=True)
class Single:
    keys: dict[str, Any]
    required: int = REQUIRED
    default: Any = None


@dataclass(frozen=True)
class Multiple:
    content: Any
    required: int = REQUIRED
    default: Any = None


def _clean(value: str, ptype: str) -> Any:
    """lib/moodlelib.php clean_param for the PARAM_* types our functions use."""
    if ptype == "int":
        m = re.match(r"\s*[+-]?\d+", value)
        return int(m.group(0)) if m else 0
    if ptype == "alpha":
        return re.sub(r"[^a-zA-Z]+", "", value)
    if ptype == "alphanum":
        return re.sub(r"[^A-Za-z0-9]+", "", value)
    if ptype == "alphanumext":
        return re.sub(r"[^A-Za-z0-9_-]+", "", value)
    if ptype == "username":  # PARAM_USERNAME without $CFG->extendedusernamechars
        return re.sub(r"[^-.@_a-z0-9]", "", value.strip().lower())
    return value


def validate_parameters(desc: Any, params: Any) -> Any:
    """lib/external/classes/external_api.php external_api::validate_parameters."""
    if isinstance(desc, Value):
        if isinstance(params, (dict, list)):
            raise invalid_parameter("Scalar type expected, array or object received.")
        if desc.type == "bool" and params in (True, False, 0, 1, "0", "1"):
            return bool(int(params))
        cleaned = _clean(str(params), desc.type)
        if str(cleaned) != str(params):  # validate_param: the value must survive cleaning unchanged
            raise invalid_parameter(f'Invalid external api parameter: the value is "{params}", '
                                    f'the server was expecting "{desc.type}" type')
        return cleaned
    if isinstance(desc, Single):
        if not isinstance(params, dict):
            raise invalid_parameter(f"Only arrays accepted. The bad value is: '{params}'")
        params = dict(params)
        out = {}
        for key, sub in desc.keys.items():
            if key not in params:
                if sub.required == REQUIRED:
                    raise invalid_parameter(f"Missing required key in single structure: {key}")
                if sub.required == DEFAULT:
                    out[key] = sub.default
            else:
                try:
                    out[key] = validate_parameters(sub, params[key])
                except MoodleException as e:
                    raise invalid_parameter(f"{key} => {e.message}: {e.debuginfo}") from None
            params.pop(key, None)
        if params:
            raise invalid_parameter(f"Unexpected keys ({', '.join(params)}) detected in parameter array.")
        return out
    if isinstance(desc, Multiple):
        if not isinstance(params, dict):  # PHP arrays arrive as dicts keyed "0", "1", ...
            raise invalid_parameter(f"Only arrays accepted. The bad value is: '{params}'")
        return [validate_parameters(desc.content, v) for v in params.values()]
    raise invalid_parameter("Invalid external api description")


def php_parse(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Rebuild PHP's ``$_POST`` from ``a[0][b]=c`` pairs (insertion order kept, like PHP arrays)."""
    root: dict[str, Any] = {}
    for name, value in pairs:
        m = re.match(r"^([^\[]+)((?:\[[^\]]*\])*)$", name)
        if not m:
            root[name] = value
            continue
        keys = [m.group(1)] + re.findall(r"\[([^\]]*)\]", m.group(2))
        node = root
        for k in keys[:-1]:
            nxt = node.get(k)
            if not isinstance(nxt, dict):
                nxt = node[k] = {}
            node = nxt
        last = keys[-1]
        if last == "":
            last = str(len(node))
        node[last] = value
    return root


# ----------------------------------------------------------------------------- data model

@dataclass
class User:
    id: int
    username: str
    firstname: str = ""
    lastname: str = ""
    email: str = ""
    idnumber: str = ""
    department: str = ""
    institution: str = ""
    city: str = ""
    country: str = ""
    auth: str = "manual"
    lang: str = "en"
    timezone: str = "99"
    suspended: bool = False
    confirmed: int = 1
    deleted: bool = False
    firstaccess: int = 0
    lastaccess: int = 0
    description: str = ""
    interests: list[str] = field(default_factory=list)
    custom: dict[str, str] = field(default_factory=dict)  # shortname -> stored data (strings, as in the DB)


@dataclass
class Cohort:
    id: int
    name: str
    idnumber: str
    contextid: int = SYSTEM_CONTEXT
    description: str = ""
    visible: bool = True
    component: str = ""


@dataclass
class ProfileField:
    shortname: str
    name: str
    datatype: str  # checkbox, datetime, menu, text, textarea, social
    param1: str = ""  # menu: the options, one per line (user/profile/field/menu/field.class.php)
    visible: int = 2  # PROFILE_VISIBLE_ALL


@dataclass
class Call:
    function: str
    params: dict[str, Any]
    error: str | None = None  # Moodle's errorcode when the call failed
    warnings: list[dict[str, Any]] = field(default_factory=list)
    at: float = field(default_factory=time.time)


class MoodleDouble:
    """In-memory Moodle site + REST server. ``url`` is the site root to give the connector."""

    def __init__(self, token: str = "ws-token-0123456789abcdef", debug: bool = False,
                 capabilities: frozenset[str] = DEFAULT_CAPS, plugin: bool = False) -> None:
        self.token = token
        self.debug = debug
        self.capabilities = set(capabilities)
        self.plugin = plugin  # local_segmentsync installed (its web-service function exists)
        self.rest_enabled = True
        self.show_email = True  # email is one of $CFG->showuseridentity
        self.users: dict[int, User] = {}
        self.cohorts: dict[int, Cohort] = {}
        self.members: dict[int, dict[int, float]] = {}  # cohortid -> userid -> timeadded
        self.fields: dict[str, ProfileField] = {}
        self.calls: list[Call] = []
        self.delay = 0.0
        self.lock = threading.RLock()
        self._fail: list[int] = []  # HTTP statuses for the next calls (0 = drop the connection)
        self._next_user = 2  # id 1 is the guest user
        self._by_username: dict[str, User] = {}  # an index, as the DB's unique key (mnethostid, username)
        self._next_cohort = 1
        self.functions: dict[str, tuple[Any, Callable[..., Any]]] = {
            "core_cohort_add_cohort_members": (ADD_MEMBERS, self.core_cohort_add_cohort_members),
            "core_cohort_delete_cohort_members": (DELETE_MEMBERS, self.core_cohort_delete_cohort_members),
            "core_cohort_get_cohorts": (GET_COHORTS, self.core_cohort_get_cohorts),
            "core_cohort_search_cohorts": (SEARCH_COHORTS, self.core_cohort_search_cohorts),
            "core_cohort_get_cohort_members": (GET_MEMBERS, self.core_cohort_get_cohort_members),
            "core_user_get_users_by_field": (USERS_BY_FIELD, self.core_user_get_users_by_field),
            PLUGIN_FUNCTION: (Single({}), self.local_segmentsync_get_profile_fields),
        }
        self.service_functions = set(self.functions)  # functions added to the token's external service
        self._server: ThreadingHTTPServer | None = None
        self.url = ""

    # ------------------------------------------------------------------ test helpers
    def add_user(self, username: str, **kw: Any) -> User:
        with self.lock:
            u = User(self._next_user, username, **kw)
            self.users[u.id] = u
            self._by_username[u.username] = u
            self._next_user += 1
            return u

    def add_cohort(self, idnumber: str, name: str | None = None, **kw: Any) -> Cohort:
        with self.lock:
            c = Cohort(self._next_cohort, name or idnumber, idnumber, **kw)
            self.cohorts[c.id] = c
            self.members[c.id] = {}
            self._next_cohort += 1
            return c

    def add_field(self, shortname: str, datatype: str, name: str | None = None, options: list[str] | None = None,
                  **kw: Any) -> ProfileField:
        with self.lock:
            f = ProfileField(shortname, name or shortname, datatype, "\n".join(options or []), **kw)
            self.fields[shortname] = f
            return f

    def delete_user(self, userid: int) -> None:
        """lib/moodlelib.php delete_user: marks the record deleted, rewrites username/idnumber/email,
        removes cohort memberships and deletes the user's context."""
        with self.lock:
            u = self.users[userid]
            u.deleted = True
            self._by_username.pop(u.username, None)
            u.username = f"{u.email or u.username}.{int(time.time())}"
            u.idnumber = ""
            for mem in self.members.values():
                mem.pop(userid, None)

    def cohort(self, idnumber: str) -> Cohort:
        return next(c for c in self.cohorts.values() if c.idnumber == idnumber)

    def member_ids(self, idnumber: str) -> set[int]:
        with self.lock:
            return set(self.members[self.cohort(idnumber).id])

    def member_names(self, idnumber: str) -> set[str]:
        with self.lock:
            return {self.users[u].username for u in self.members[self.cohort(idnumber).id]}

    def fail_next(self, n: int, status: int = 503) -> None:
        with self.lock:
            self._fail.extend([status] * n)

    def drop_next(self, n: int) -> None:
        self.fail_next(n, 0)

    def calls_to(self, function: str) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.function == function]

    def errors(self) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.error]

    # ------------------------------------------------------------------------ server
    def start(self) -> "MoodleDouble":
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body leave in two writes; without TCP_NODELAY every answer on a
            # kept-alive connection waits ~40 ms for the client's delayed ACK (Nagle)
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802
                self._handle(b"")

            def do_POST(self) -> None:  # noqa: N802
                n = int(self.headers.get("Content-Length") or 0)
                self._handle(self.rfile.read(n) if n else b"")

            def _handle(self, body: bytes) -> None:
                parts = urlsplit(self.path)
                if parts.path != "/webservice/rest/server.php":
                    return self._send(404, b"<html>Not found</html>", "text/html")
                with double.lock:
                    fail = double._fail.pop(0) if double._fail else None
                if fail == 0:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if fail:
                    return self._send(fail, b"<html>Service unavailable</html>", "text/html")
                if not double.rest_enabled:
                    return self._send(403, b"", "text/html")
                pairs = parse_qsl(parts.query, keep_blank_values=True)
                pairs += parse_qsl(body.decode("utf-8"), keep_blank_values=True)
                status, payload, ctype = double.dispatch(php_parse(pairs))
                self._send(status, payload, ctype)

            def _send(self, status: int, payload: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client died (kill -9 tests)
                    self.close_connection = True

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="moodle-double", daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def dispatch(self, request: dict[str, Any]) -> tuple[int, bytes, str]:
        """webservice_base_server::run: parse, authenticate, load the function, validate, execute."""
        fmt = request.pop("moodlewsrestformat", "xml")
        token = request.pop("wstoken", None)
        function = str(request.pop("wsfunction", ""))
        for k in [k for k in request if k.startswith("moodlewssetting")]:
            request.pop(k)
        if self.delay:
            time.sleep(self.delay)
        call = Call(function, request)
        try:
            if token != self.token:
                raise MoodleException("moodle_exception", "invalidtoken", "Invalid token - token not found")
            if function not in self.functions or (function == PLUGIN_FUNCTION and not self.plugin):
                raise missing_record("external_functions")
            if function not in self.service_functions:
                raise MoodleException("webservice_access_exception", "accessexception", "Access control exception",
                                      f"Access to the function {function}() is not allowed.")
            desc, handler = self.functions[function]
            params = validate_parameters(desc, request)
            with self.lock:
                result = handler(call, **params)
        except MoodleException as exc:
            call.error = exc.errorcode
            with self.lock:
                self.calls.append(call)
            body = {"exception": exc.exception, "errorcode": exc.errorcode, "message": exc.message}
            if self.debug and exc.debuginfo:
                body["debuginfo"] = exc.debuginfo
            return self._format(fmt, body)
        with self.lock:
            self.calls.append(call)
        return self._format(fmt, result)

    @staticmethod
    def _format(fmt: str, body: Any) -> tuple[int, bytes, str]:
        if fmt != "json":  # XML is Moodle's default; the connector must ask for JSON
            return 200, b'<?xml version="1.0" encoding="UTF-8" ?>\n<RESPONSE/>\n', "application/xml; charset=utf-8"
        return 200, json.dumps(body).encode(), "application/json"

    # --------------------------------------------------------------------- functions
    def _has(self, *caps: str) -> bool:
        return any(c in self.capabilities for c in caps)

    def core_cohort_add_cohort_members(self, call: Call, members: list[dict[str, Any]]) -> dict[str, Any]:
        """cohort/externallib.php core_cohort_external::add_cohort_members.

        One delegated transaction. Per member: a cohort type other than id/idnumber or a user
        type other than id/username is warning 1 (so ``usertype idnumber`` is refused); a missing
        cohort or a missing/deleted user is warning 2; an existing member is warning 3
        ("record already exists"); otherwise the capability check (manage or assign) throws
        for the whole call (rolled back) or cohort_add_member adds the member.
        """
        warnings: list[dict[str, Any]] = []
        added: list[tuple[int, int]] = []
        by_id = {c.id: c for c in self.cohorts.values()}
        for m in members:
            ct, ut = m["cohorttype"], m["usertype"]
            if ct["type"] not in ("id", "idnumber"):
                warnings.append({"warningcode": "1", "message": f"invalid parameter: cohortype={ct['type']}"})
                continue
            if ut["type"] not in ("id", "username"):
                warnings.append({"warningcode": "1", "message": f"invalid parameter: usertype={ut['type']}"})
                continue
            cohort = (by_id.get(int(ct["value"])) if ct["type"] == "id" and str(ct["value"]).isdigit()
                      else next((c for c in self.cohorts.values() if c.idnumber == ct["value"]), None))
            if cohort is None:
                warnings.append({"warningcode": "2", "message": f"cohort {ct['type']}={ct['value']} not exists"})
                continue
            if ut["type"] == "id":
                user = self.users.get(int(ut["value"])) if str(ut["value"]).isdigit() else None
            else:
                user = self._by_username.get(str(ut["value"]))
            if user is None or user.deleted:
                warnings.append({"warningcode": "2", "message": f"user {ut['type']}={ut['value']} not exists"})
                continue
            if user.id in self.members[cohort.id] or (cohort.id, user.id) in added:
                warnings.append({"warningcode": "3", "message": f"record already exists: cohort({ct['type']}="
                                 f"{ct['value']} {ut['type']}={ut['value']})"})
                continue
            if not self._has(CAP_MANAGE, CAP_ASSIGN):
                raise required_capability(CAP_ASSIGN)
            added.append((cohort.id, user.id))
        for cid, uid in added:  # the transaction commits
            self.members[cid][uid] = time.time()
        call.warnings = warnings
        return {"warnings": warnings}

    def core_cohort_delete_cohort_members(self, call: Call, members: list[dict[str, Any]]) -> None:
        """cohort/externallib.php core_cohort_external::delete_cohort_members.

        One delegated transaction; the cohort and the user (``deleted = 0``) are read with
        MUST_EXIST, so one missing cohort or deleted user throws dml_missing_record_exception and
        nothing of the batch is applied. Removing a non-member is not an error
        (cohort/lib.php cohort_remove_member: delete_records). Returns null.
        """
        removed: list[tuple[int, int]] = []
        for m in members:
            cohort = self.cohorts.get(m["cohortid"])
            if cohort is None:
                raise missing_record("cohort")
            user = self.users.get(m["userid"])
            if user is None or user.deleted:
                raise missing_record("user")
            if not self._has(CAP_MANAGE, CAP_ASSIGN):
                raise required_capability(CAP_ASSIGN)
            removed.append((cohort.id, user.id))
        for cid, uid in removed:
            self.members[cid].pop(uid, None)
        return None

    def _cohort_info(self, c: Cohort) -> dict[str, Any]:
        return {"id": c.id, "name": c.name, "idnumber": c.idnumber, "description": c.description,
                "descriptionformat": 1, "visible": c.visible}

    def core_cohort_get_cohorts(self, call: Call, cohortids: list[int]) -> list[dict[str, Any]]:
        """cohort/externallib.php core_cohort_external::get_cohorts: every cohort when ``cohortids`` is
        empty, else those ids (unknown ids are skipped: get_records_list); each needs
        moodle/cohort:manage or moodle/cohort:view in its context, else nopermissions."""
        chosen = list(self.cohorts.values()) if not cohortids else [self.cohorts[i] for i in cohortids
                                                                    if i in self.cohorts]
        out = []
        for c in chosen:
            if not self._has(CAP_MANAGE, CAP_VIEW):
                raise required_capability(CAP_VIEW)
            out.append(self._cohort_info(c))
        return out

    def core_cohort_search_cohorts(self, call: Call, query: str, context: dict[str, Any], includes: str,
                                   limitfrom: int, limitnum: int) -> dict[str, Any]:
        """cohort/externallib.php core_cohort_external::search_cohorts with cohort/lib.php
        cohort_get_cohorts / cohort_get_all_cohorts: case-insensitive substring match on name,
        idnumber and description, ordered by name then idnumber. Quirk kept: ``limitfrom`` is passed
        as the *page* number, so the offset is limitfrom * limitnum."""
        if not self._has(CAP_MANAGE, CAP_VIEW):
            raise required_capability(CAP_VIEW)
        q = query.lower()
        hits = [c for c in self.cohorts.values()
                if q in c.name.lower() or q in c.idnumber.lower() or q in c.description.lower()]
        if includes != "all":
            hits = [c for c in hits if c.contextid == SYSTEM_CONTEXT]
        hits.sort(key=lambda c: (c.name, c.idnumber))
        start = limitfrom * limitnum
        return {"cohorts": [self._cohort_info(c) for c in hits[start:start + limitnum]]}

    def core_cohort_get_cohort_members(self, call: Call, cohortids: list[int]) -> list[dict[str, Any]]:
        """cohort/externallib.php core_cohort_external::get_cohort_members: per cohort id (MUST_EXIST:
        an unknown id throws for the whole call), the member user ids joined with {user} and
        ordered by lastname, firstname; needs moodle/cohort:manage or moodle/cohort:view."""
        out = []
        for cid in cohortids:
            cohort = self.cohorts.get(cid)
            if cohort is None:
                raise missing_record("cohort")
            if not self._has(CAP_MANAGE, CAP_VIEW):
                raise required_capability(CAP_VIEW)
            ids = [u for u in self.members[cid] if u in self.users]
            ids.sort(key=lambda u: (self.users[u].lastname, self.users[u].firstname))
            out.append({"cohortid": cid, "userids": ids})
        return out

    def _details(self, u: User) -> dict[str, Any] | None:
        """user/lib.php user_get_user_details as seen by a web-service user holding ``capabilities``:
        nothing without moodle/user:viewdetails; names need moodle/site:viewfullnames; username,
        idnumber, institution, department and auth/confirmed/lang/timezone need
        moodle/user:viewalldetails; empty city, country, idnumber, institution are omitted; custom
        fields only when not empty (profile_field_base::is_empty: "0" is not empty) as strings;
        interests joined with ", "."""
        if not self._has(CAP_VIEWDETAILS):
            return None
        d: dict[str, Any] = {"id": u.id}
        alldetails = self._has(CAP_VIEWALLDETAILS)
        if alldetails:
            d["username"] = u.username
        if self._has(CAP_FULLNAMES):
            d["firstname"], d["lastname"] = u.firstname, u.lastname
        d["fullname"] = f"{u.firstname} {u.lastname}".strip()
        custom = []
        for short, data in u.custom.items():
            f = self.fields.get(short)
            if f is None or (data != "0" and not data):
                continue
            custom.append({"type": f.datatype, "value": data, "name": f.name, "shortname": f.shortname})
        if custom:
            d["customfields"] = custom
        d["profileimageurlsmall"] = f"{self.url}/theme/image.php/boost/core/1/u/f2"
        d["profileimageurl"] = f"{self.url}/theme/image.php/boost/core/1/u/f1"
        if u.description:
            d["description"], d["descriptionformat"] = u.description, 1
        if u.country:
            d["country"] = u.country
        if u.city:
            d["city"] = u.city
        d["suspended"] = bool(u.suspended)
        d["firstaccess"] = u.firstaccess or 0
        d["lastaccess"] = u.lastaccess or 0
        if self.show_email:
            d["email"] = u.email
        if u.interests:
            d["interests"] = ", ".join(u.interests)
        if u.idnumber and alldetails:
            d["idnumber"] = u.idnumber
        if u.institution and alldetails:
            d["institution"] = u.institution
        if alldetails:
            d["department"] = u.department
            d.update(auth=u.auth, confirmed=u.confirmed, lang=u.lang, theme="", timezone=u.timezone, mailformat=1)
        return d

    def core_user_get_users_by_field(self, call: Call, field: str, values: list[str]) -> list[dict[str, Any]]:
        """user/externallib.php core_user_external::get_users_by_field.

        ``field`` is id, idnumber, username or email (else coding_exception); every value must
        survive clean_param unchanged or the whole call fails (invalid_parameter_exception: e.g. a
        username with capitals); users come from get_records_list ordered by id, *deleted ones
        included*: for those user_get_user_details_courses -> can_view_user_details_cap ->
        context_user::instance (MUST_EXIST) fails, because delete_user removed the user's context,
        so an id lookup of a deleted user fails the whole call (usernames and idnumbers of deleted
        users are rewritten, so those lookups simply miss). A user is returned only if the searched
        field is in the details the caller may see."""
        ptype = {"id": "int", "idnumber": "raw", "username": "username", "email": "raw"}.get(field)
        if ptype is None:
            raise MoodleException("coding_exception", "codingerror",
                                  "Coding error detected, it must be fixed by a programmer: invalid field parameter")
        wanted = []
        for v in values:
            cleaned = _clean(str(v), ptype)
            if str(cleaned) != str(v):
                raise invalid_parameter(f"The field '{field}' value is invalid: {v}(cleaned value: {cleaned})")
            wanted.append(str(cleaned))
        if field == "id":
            hits = (self.users.get(int(v)) for v in wanted)
        elif field == "username":
            hits = (self._by_username.get(v) for v in wanted)
        else:
            hits = (u for u in self.users.values() if str(getattr(u, field)) in wanted)
        found = sorted({u.id: u for u in hits if u is not None}.values(), key=lambda u: u.id)
        out = []
        for u in found:
            if u.deleted:
                raise missing_record("user")
            d = self._details(u)
            if d and d.get(field):
                out.append(d)
        return out

    def local_segmentsync_get_profile_fields(self, call: Call) -> dict[str, Any]:
        """The local_segmentsync plugin's function (moodle/local_segmentsync in this repository):
        every custom profile field definition with its datatype and menu options, as the
        connector expects it (``{"fields": [{shortname, name, datatype, options}]}``)."""
        return {"fields": [{"shortname": f.shortname, "name": f.name, "datatype": f.datatype,
                            "options": [o for o in f.param1.split("\n") if o] if f.datatype == "menu" else []}
                           for f in sorted(self.fields.values(), key=lambda f: f.shortname)]}


# Parameter descriptions (the *_parameters() methods of the functions above).
_TYPED = Single({"type": Value("alphanumext"), "value": Value("raw")})
ADD_MEMBERS = Single({"members": Multiple(Single({"cohorttype": _TYPED, "usertype": _TYPED}))})
DELETE_MEMBERS = Single({"members": Multiple(Single({"cohortid": Value("int"), "userid": Value("int")}))})
GET_COHORTS = Single({"cohortids": Multiple(Value("int"), DEFAULT, [])})
SEARCH_COHORTS = Single({
    "query": Value("raw"),
    "context": Single({"contextid": Value("int", DEFAULT, 0), "contextlevel": Value("alphanum", DEFAULT, ""),
                       "instanceid": Value("int", DEFAULT, 0)}),
    "includes": Value("alpha", DEFAULT, "parents"),
    "limitfrom": Value("int", DEFAULT, 0),
    "limitnum": Value("int", DEFAULT, 25),
})
GET_MEMBERS = Single({"cohortids": Multiple(Value("int"))})
USERS_BY_FIELD = Single({"field": Value("alpha"), "values": Multiple(Value("raw"))})
