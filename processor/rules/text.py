"""A readable text form for condition trees: ``parse_text`` and its exact inverse ``to_text``.

Example::

    department == "Sales" and (profile_field_level in ["Senior", "Lead"] or not suspended is_checked)

is the tree::

    {"all": [{"field": "department", "op": "equals", "value": "Sales"},
             {"any": [{"field": "profile_field_level", "op": "in", "value": ["Senior", "Lead"]},
                      {"not": {"field": "suspended", "op": "is_checked"}}]}]}

Grammar (tokens may be separated by spaces, tabs, CR and LF)::

    condition := or_expr
    or_expr   := and_expr ("or" and_expr)*       2+ operands -> {"any": [...]}
    and_expr  := unary ("and" unary)*            2+ operands -> {"all": [...]}
    unary     := "not" unary                     -> {"not": c}
               | "all" "(" or_expr ")"           -> {"all": [c]}   (exactly one child)
               | "any" "(" or_expr ")"           -> {"any": [c]}   (exactly one child)
               | "(" or_expr ")"                 -> the inner node itself
               | leaf
    leaf      := FIELD OP [VALUE] modifier*      -> {"field", "op", "value"?, ...}
    modifier  := "case_sensitive"                -> "case_sensitive": true
               | "case_insensitive"              -> "case_sensitive": false
               | "missing" ("match" | "no_match")-> "missing": ...
    FIELD     := IDENT, other than and / or / not
    OP        := IDENT, other than and / or / not  (the operator name, kept verbatim)
               | "==" | "!=" | "<" | "<=" | ">" | ">="
                 (equals, not_equals, lt, lte, gt, gte; these must be followed by a VALUE)
    VALUE     := a JSON literal: "string" (JSON escapes), number, true, false, null,
                 [array], {object}  (numbers must be finite)
               | a bare ISO-8601 duration such as P30D or PT12H (read as the string "P30D")
    IDENT     := [A-Za-z_][A-Za-z0-9_]*

* ``not`` binds tightest, then ``and``, then ``or``: ``a or b and c`` is ``a or (b and c)``.
* Keywords (and, or, not, all(, any(, the modifiers, match / no_match) are case-insensitive.
  Field and operator names are kept verbatim; JSON literals are case-sensitive.
* Parentheses keep structure: ``a and (b and c)`` is ``{"all": [a, {"all": [b, c]}]}``,
  not a flattened three-way ``all``; ``(x)`` around a single condition adds nothing.
* ``all`` / ``any`` are only keywords when followed by ``(``; ``all is_empty`` is a leaf on a
  field called ``all``.
* The grammar knows no operator list: whether an operator exists or needs a value is decided
  by the compiler, so any operator registered later works here unchanged.

Canonical form (what ``to_text`` prints, and ``parse_text(to_text(t)) == t`` exactly):

* keywords lowercase, single spaces, no redundant parentheses;
* an ``all`` / ``any`` with 2+ children is an ``and`` / ``or`` chain; when it is itself an operand
  of a chain or of ``not`` it is parenthesized (whatever the parent combinator), so nesting is kept;
* an ``all`` / ``any`` with one child prints as ``all(<child>)`` / ``any(<child>)``;
* ``not`` prints as ``not <operand>``: a leaf, another ``not``, ``all(..)`` / ``any(..)``, or a
  parenthesized chain;
* operators print by name (``equals``, never ``==``); values print as JSON (``json.dumps``,
  non-ASCII kept, ``", "`` / ``": "`` separators), so durations appear quoted: ``"P30D"``;
* modifiers follow the value: ``case_sensitive`` or ``case_insensitive``, then ``missing match`` /
  ``missing no_match``.

Errors are ``RuleError(code="INVALID_CONDITION")``. Text errors have the path ``$text[col N]``
where N is the 0-based character offset into the text (``text[N]`` is where the problem was
found; N == len(text) means the end), and a message ``expected <what>, found <what>``.
``to_text`` reports trees it cannot print with a JSON path (``$.all[1].field``), like the
compiler: INVALID_CONDITION for structure, INVALID_VALUE for a value that is not plain finite
JSON. Both sides enforce the compiler's limits (MAX_DEPTH levels, MAX_NODES nodes), a leaf value
nests at most MAX_VALUE_DEPTH levels, and the text is at most MAX_TEXT_CHARS characters.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from processor.rules.compiler import GROUP_KEYS, LEAF_KEYS, MAX_DEPTH, MAX_NODES, parse_condition_json
from processor.rules.exceptions import CompileError, RuleError
from processor.rules.values import show

__all__ = ["MAX_TEXT_CHARS", "MAX_VALUE_DEPTH", "condition_from_any", "parse_text", "to_text"]

MAX_TEXT_CHARS = 64 * 1024
MAX_VALUE_DEPTH = 32  # nesting of a JSON value inside a leaf (real values use 1 or 2)

_WS = re.compile(r"[ \t\r\n]*")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_NUMBER = re.compile(r"-?[0-9][0-9.eE+-]*")
_STRING = re.compile(r'"(?:[^"\\\n]|\\.){0,30}"?')
# A bare ISO-8601 duration (P30D, PT12H, P1DT2H, PT0.5S): kept verbatim as a string value.
_DURATION = re.compile(
    r"[Pp](?=[0-9Tt])(?:[0-9]+(?:\.[0-9]+)?[A-Za-z])*"
    r"(?:[Tt](?:[0-9]+(?:\.[0-9]+)?[A-Za-z])+)?(?![A-Za-z0-9_.])"
)
_SUGAR = (("==", "equals"), ("!=", "not_equals"), ("<=", "lte"), (">=", "gte"), ("<", "lt"), (">", "gt"))
_KEYWORDS = frozenset({"and", "or", "not"})
_VALUE_WORDS = frozenset({"true", "false", "null"})
_VALUE_START = frozenset('"[{-0123456789')
_VALUE_DESC = 'a value (a "quoted string", number, true, false, null, [list] or {object})'
_CONDITION_DESC = "a condition (a field name, 'not', '(', 'all(' or 'any(')"
_CONNECTIVE_HINTS = (("&&", "and"), ("||", "or"), ("&", "and"), ("|", "or"))


class _NonFinite(Exception):
    """Raised from the JSON decoder hooks for NaN, Infinity and overflowing floats."""


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NonFinite(text)
    return value


def _no_constant(text: str) -> Any:
    raise _NonFinite(text)


_DECODER = json.JSONDecoder(parse_float=_finite_float, parse_constant=_no_constant)

_JSON_EXPECTED = {
    "Expecting value": _VALUE_DESC,
    "Expecting ',' delimiter": "',' or a closing ']' / '}'",
    "Expecting ':' delimiter": "':' after the object key",
    "Expecting property name enclosed in double quotes": "an object key in double quotes",
    "Invalid control character at": "a closing '\"' or a JSON escape such as \\n (raw control characters "
                                     "are not allowed in strings)",
    "Invalid \\escape": "a JSON escape (\\\", \\\\, \\/, \\b, \\f, \\n, \\r, \\t or \\uXXXX)",
    "Invalid \\uXXXX escape": "four hex digits after \\u",
}


def _value_problem(value: Any) -> str | None:
    """Why ``value`` is not a plain, finite, bounded JSON value (None when it is)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if item is None or kind in (bool, int, str):
            continue
        if kind is float:
            if not math.isfinite(item):
                return f"numbers must be finite, found {item!r}"
            continue
        if kind not in (list, dict):
            return ("values must be plain JSON (null, true/false, number, string, list, object), "
                    f"found {kind.__name__}")
        if depth > MAX_VALUE_DEPTH:
            return f"a value may be nested at most {MAX_VALUE_DEPTH} levels deep"
        if kind is dict:
            bad = next((k for k in item if type(k) is not str), None)
            if bad is not None:
                return f"object keys must be strings, found {type(bad).__name__} {show(bad)}"
            stack.extend((v, depth + 1) for v in item.values())
        else:
            stack.extend((v, depth + 1) for v in item)
    return None


def _describe(text: str, pos: int) -> str:
    """The token at ``pos``, for 'found ...' in messages."""
    if pos >= len(text):
        return "end of input"
    for rx in (_WORD, _NUMBER, _STRING):
        m = rx.match(text, pos)
        if m:
            token = m.group()
            return repr(token if len(token) <= 30 else token[:30] + "...")
    return repr(text[pos])


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.n = len(text)
        self.pos = 0
        self.nodes = 0
        self.nest = 0  # syntactic nesting: '(' / 'all(' / 'any(' / 'not'
        self.open_parens = 0

    # ------------------------------------------------------------ helpers

    def error(self, message: str, pos: int, suggestion: str | None = None) -> RuleError:
        return RuleError("INVALID_CONDITION", message, f"$text[col {pos}]", suggestion)

    def fail(self, expected: str, pos: int | None = None, suggestion: str | None = None) -> RuleError:
        at = self.pos if pos is None else pos
        return self.error(f"expected {expected}, found {_describe(self.text, at)}", at, suggestion)

    def ws(self) -> None:
        self.pos = _WS.match(self.text, self.pos).end()  # type: ignore[union-attr]

    def word(self) -> str | None:
        m = _WORD.match(self.text, self.pos)
        return m.group() if m else None

    def keyword(self, *names: str) -> str | None:
        """The (lowercased) keyword at the cursor if it is one of ``names``; not consumed."""
        w = self.word()
        return w.lower() if w is not None and w.lower() in names else None

    def connective_hint(self) -> str | None:
        for sym, word in _CONNECTIVE_HINTS:
            if self.text.startswith(sym, self.pos):
                return word
        return None

    def quoted_word(self) -> str | None:
        """``"Sales"`` when the cursor is on a bare word that reads like an unquoted text value."""
        w = self.word()
        if w is None or w.lower() in _KEYWORDS:
            return None
        return json.dumps(w)

    def enter(self, pos: int) -> None:
        self.nest += 1
        if self.nest > MAX_DEPTH:
            raise self.error(f"expected at most {MAX_DEPTH} levels of nesting, found more", pos)

    def made(self, node: dict[str, Any], height: int, pos: int) -> tuple[dict[str, Any], int]:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise self.error(f"expected at most {MAX_NODES} conditions, found more "
                             f"(condition has more than {MAX_NODES} nodes)", pos)
        if height > MAX_DEPTH:
            raise self.error(f"expected at most {MAX_DEPTH} levels of nesting, found more "
                             f"(condition is nested deeper than {MAX_DEPTH} levels)", pos)
        return node, height

    # ------------------------------------------------------------ grammar

    def parse(self) -> dict[str, Any]:
        node, _ = self.or_expr()
        self.ws()
        if self.pos < self.n:
            raise self.fail("'and', 'or' or end of input", suggestion=self.connective_hint())
        return node

    def or_expr(self) -> tuple[dict[str, Any], int]:
        return self.chain("or", "any", self.and_expr)

    def and_expr(self) -> tuple[dict[str, Any], int]:
        return self.chain("and", "all", self.unary)

    def chain(self, keyword: str, key: str, operand: Any) -> tuple[dict[str, Any], int]:
        self.ws()
        start = self.pos
        items = [operand()]
        while True:
            self.ws()
            if self.keyword(keyword) is None:
                break
            self.pos += len(keyword)
            items.append(operand())
        if len(items) == 1:
            return items[0]
        return self.made({key: [node for node, _ in items]}, 1 + max(h for _, h in items), start)

    def unary(self) -> tuple[dict[str, Any], int]:
        self.ws()
        start = self.pos
        if start >= self.n:
            raise self.fail(_CONDITION_DESC)
        w = self.word()
        low = w.lower() if w is not None else None
        if low == "not":
            self.pos += 3
            self.enter(start)
            child, height = self.unary()
            self.nest -= 1
            return self.made({"not": child}, height + 1, start)
        if self.text[start] == "(":
            self.open(start, start + 1)
            node, height = self.or_expr()
            self.close(start, "'('")
            return node, height
        if w is not None and low in ("all", "any"):
            after = _WS.match(self.text, start + len(w)).end()  # type: ignore[union-attr]
            if after < self.n and self.text[after] == "(":
                self.open(start, after + 1)
                child, height = self.or_expr()
                self.close(start, f"'{w}('")
                return self.made({low: [child]}, height + 1, start)
        if w is None or low in _KEYWORDS:
            raise self.fail(_CONDITION_DESC, suggestion="not" if self.text[start] == "!" else None)
        return self.leaf(start, w)

    def open(self, start: int, after: int) -> None:
        """Consume an opening '(' (at ``after - 1``) of a group or function starting at ``start``."""
        self.pos = after
        self.enter(start)
        self.open_parens += 1

    def close(self, open_pos: int, what: str) -> None:
        self.ws()
        if self.pos < self.n and self.text[self.pos] == ")":
            self.pos += 1
            self.nest -= 1
            self.open_parens -= 1
            return
        raise self.fail(f"'and', 'or' or ')' to close {what} at col {open_pos}",
                        suggestion=self.connective_hint())

    def leaf(self, start: int, field: str) -> tuple[dict[str, Any], int]:
        self.pos += len(field)
        self.ws()
        op, sugar = self.operator(field)
        node: dict[str, Any] = {"field": field, "op": op}
        self.ws()
        if self.value_ahead():
            node["value"] = self.value()
        elif sugar is not None:
            raise self.fail(f"{_VALUE_DESC} after {sugar!r}", suggestion=self.quoted_word())
        while True:
            self.ws()
            mod = self.keyword("case_sensitive", "case_insensitive", "missing")
            if mod is None:
                break
            if mod == "missing":
                if "missing" in node:
                    raise self.fail("at most one 'missing' modifier per condition")
                self.pos += len(mod)
                self.ws()
                choice = self.keyword("match", "no_match")
                if choice is None:
                    raise self.fail("'match' or 'no_match' after 'missing'")
                self.pos += len(choice)
                node["missing"] = choice
            else:
                if "case_sensitive" in node:
                    raise self.fail("at most one 'case_sensitive' / 'case_insensitive' modifier "
                                    "per condition")
                self.pos += len(mod)
                node["case_sensitive"] = mod == "case_sensitive"
        self.ws()
        self.follow(node)
        return self.made(node, 1, start)

    def follow(self, node: dict[str, Any]) -> None:
        """What may come after a leaf: and, or, ')' (inside parentheses) or the end."""
        if self.pos >= self.n or self.keyword("and", "or"):
            return
        if self.text[self.pos] == ")" and self.open_parens > 0:
            return
        parts = []
        if "value" not in node:
            parts.append("a value")
        mods = []
        if "case_sensitive" not in node:
            mods += ["case_sensitive", "case_insensitive"]
        if "missing" not in node:
            mods.append("missing")
        if mods:
            parts.append(f"a modifier ({', '.join(mods)})")
        parts += ["'and'", "'or'"]
        if self.open_parens > 0:
            parts.append("')'")
        parts.append("end of input")
        suggestion = self.connective_hint() or (self.quoted_word() if "value" not in node else None)
        raise self.fail(f"{_join(parts)} after '{node['field']} {node['op']}'", suggestion=suggestion)

    def operator(self, field: str) -> tuple[str, str | None]:
        for sym, name in _SUGAR:
            if self.text.startswith(sym, self.pos):
                self.pos += len(sym)
                return name, sym
        w = self.word()
        if w is not None and w.lower() not in _KEYWORDS:
            self.pos += len(w)
            return w, None
        raise self.fail(
            f"an operator after field {field!r} (a name such as equals, in or is_empty, "
            "or one of ==, !=, <, <=, >, >=)",
            suggestion="==" if self.text.startswith("=", self.pos) else None,
        )

    def value_ahead(self) -> bool:
        if self.pos >= self.n:
            return False
        if self.text[self.pos] in _VALUE_START or self.word() in _VALUE_WORDS:
            return True
        return _DURATION.match(self.text, self.pos) is not None

    def value(self) -> Any:
        start = self.pos
        m = _DURATION.match(self.text, start)
        if m is not None:
            self.pos = m.end()
            return m.group()
        try:
            value, end = _DECODER.raw_decode(self.text, start)
        except json.JSONDecodeError as exc:
            if exc.msg.startswith("Unterminated string"):
                raise self.fail(f"a closing '\"' for the string that starts at col {exc.pos}",
                                self.n) from None
            expected = _JSON_EXPECTED.get(exc.msg, f"valid JSON ({exc.msg})")
            raise self.fail(expected, exc.pos) from None
        except _NonFinite as exc:
            raise self.error(f"expected a finite number, found {exc.args[0]!r}", start) from None
        except RecursionError:
            raise self.error(f"expected a value nested at most {MAX_VALUE_DEPTH} levels deep, "
                             "found a deeper one", start) from None
        except ValueError as exc:  # e.g. an integer with too many digits
            raise self.error(f"expected a valid value, found one that cannot be read: {exc}", start) from None
        problem = _value_problem(value)
        if problem is not None:
            raise self.error(f"expected a plain JSON value ({problem})", start)
        glued = end < self.n and re.match(r"[A-Za-z0-9_.:+-]", self.text[end]) is not None
        if self.text[start] in "-0123456789" and glued:
            token = re.match(r"[^ \t\r\n()]*", self.text[start:]).group()  # type: ignore[union-attr]
            dated = self.text[end] in "-:"  # an unquoted date or time such as 2026-01-31
            raise self.fail(f"a space, ')' or end of input after the number {self.text[start:end]}", end,
                            suggestion=json.dumps(token) if dated else None)
        self.pos = end
        return value


def parse_text(text: str) -> dict[str, Any]:
    """Rule text -> condition tree (plain dicts / lists); RuleError(INVALID_CONDITION) on bad text."""
    if not isinstance(text, str):
        raise RuleError("INVALID_CONDITION",
                        f"expected condition text (a string), found {type(text).__name__}", "$text")
    if len(text) > MAX_TEXT_CHARS:
        raise RuleError("INVALID_CONDITION",
                        f"expected condition text of at most {MAX_TEXT_CHARS} characters, found {len(text)}",
                        "$text")
    return _Parser(text).parse()


# ---------------------------------------------------------------- printer


class _Printer:
    def __init__(self) -> None:
        self.nodes = 0

    def kind(self, tree: Any, path: str, depth: int) -> str:
        """Validate one node (as the compiler's grammar does) and return all / any / not / leaf."""
        self.nodes += 1
        if depth > MAX_DEPTH:
            raise RuleError("INVALID_CONDITION", f"condition is nested deeper than {MAX_DEPTH} levels", path)
        if self.nodes > MAX_NODES:
            raise RuleError("INVALID_CONDITION", f"condition has more than {MAX_NODES} nodes", path)
        if not isinstance(tree, dict):
            raise RuleError("INVALID_CONDITION", f"expected an object, got {type(tree).__name__}", path)
        groups = [k for k in GROUP_KEYS if k in tree]
        if groups:
            key = groups[0]
            if len(tree) != 1:
                raise RuleError("INVALID_CONDITION", f"a {key!r} node must have no other keys; "
                                f"found {sorted(map(str, tree))}", path)
            if key != "not" and (not isinstance(tree[key], list) or not tree[key]):
                raise RuleError("INVALID_CONDITION", f"{key!r} takes a non-empty list of conditions",
                                f"{path}.{key}")
            return key
        if "field" in tree or "op" in tree:
            extra = [k for k in tree if k not in LEAF_KEYS]
            if extra:
                raise RuleError("INVALID_CONDITION", f"unknown key {extra[0]!r} in condition",
                                f"{path}.{extra[0]}")
            return "leaf"
        raise RuleError("INVALID_CONDITION", "expected {\"all\": [...]}, {\"any\": [...]}, {\"not\": ...} "
                        "or a leaf {\"field\", \"op\", \"value\"}", path)

    def expr(self, tree: Any, path: str, depth: int, operand: bool) -> str:
        kind = self.kind(tree, path, depth)
        if kind == "leaf":
            return self.leaf(tree, path)
        if kind == "not":
            return "not " + self.expr(tree["not"], f"{path}.not", depth + 1, True)
        items = tree[kind]
        if len(items) == 1:
            return f"{kind}(" + self.expr(items[0], f"{path}.{kind}[0]", depth + 1, False) + ")"
        joiner = " and " if kind == "all" else " or "
        text = joiner.join(self.expr(c, f"{path}.{kind}[{i}]", depth + 1, True) for i, c in enumerate(items))
        return f"({text})" if operand else text

    def leaf(self, tree: dict[str, Any], path: str) -> str:
        parts = []
        for key in ("field", "op"):
            name = tree.get(key)
            if not isinstance(name, str) or not _IDENT.match(name) or name.lower() in _KEYWORDS:
                raise RuleError("INVALID_CONDITION",
                                f"{key} {show(name)} cannot be written as text: expected a name of letters, "
                                "digits and _ (not starting with a digit) other than and / or / not",
                                f"{path}.{key}")
            parts.append(name)
        if "value" in tree:
            value = tree["value"]
            problem = _value_problem(value)
            if problem is not None:
                raise RuleError("INVALID_VALUE", problem, f"{path}.value")
            try:
                parts.append(json.dumps(value, ensure_ascii=False, allow_nan=False))
            except ValueError as exc:  # e.g. an integer with too many digits
                raise RuleError("INVALID_VALUE", f"value cannot be written: {exc}", f"{path}.value") from None
        if "case_sensitive" in tree:
            cs = tree["case_sensitive"]
            if not isinstance(cs, bool):
                raise RuleError("INVALID_CONDITION", "\"case_sensitive\" must be true or false",
                                f"{path}.case_sensitive")
            parts.append("case_sensitive" if cs else "case_insensitive")
        if "missing" in tree:
            missing = tree["missing"]
            if missing not in ("match", "no_match") or not isinstance(missing, str):
                raise RuleError("INVALID_CONDITION", "\"missing\" must be \"match\" or \"no_match\"",
                                f"{path}.missing")
            parts.append(f"missing {missing}")
        return " ".join(parts)


def to_text(tree: Any) -> str:
    """Condition tree -> canonical rule text; RuleError for a tree the text form cannot express."""
    text = _Printer().expr(tree, "$", 1, False)
    if len(text) > MAX_TEXT_CHARS:
        raise RuleError("INVALID_CONDITION",
                        f"condition text would be longer than {MAX_TEXT_CHARS} characters", "$")
    return text


def condition_from_any(obj: Any) -> Any:
    """A condition given as a tree, JSON text or rule text -> tree.

    Dicts pass through unchanged (the compiler validates them). A string whose first
    non-blank character is ``{`` is read as JSON (bounded like ``condition_json``); any
    other string is rule text. Errors are RuleError(INVALID_CONDITION).
    """
    if isinstance(obj, dict):
        return obj
    if isinstance(obj, str):
        if obj[_WS.match(obj).end():].startswith("{"):  # type: ignore[union-attr]
            try:
                return parse_condition_json(obj)
            except CompileError as err:
                raise err.errors[0] from None
        return parse_text(obj)
    raise RuleError("INVALID_CONDITION",
                    f"expected a condition object, JSON text or rule text, found {type(obj).__name__}", "$")
