"""How deeply JSON text nests its brackets, found without recursion.

Python's JSON parser recurses per level, so a deep enough document raises RecursionError (a 500
in the API, a crash in the compiler). Bodies and condition JSON are checked here first.
"""

from __future__ import annotations

from typing import Generator


def nesting_exceeds(text: str, limit: int, step: int = 8192) -> Generator[None, None, bool]:
    """Whether ``text`` nests brackets deeper than ``limit`` (strings skipped).

    A generator that yields after every ``step`` characters, so a caller on an event loop lets other
    work run while a large text is checked; its return value is the answer (drive it with
    :func:`exceeds`). Text with at most ``limit`` opening brackets cannot be too deep (the common
    case: one C-speed count); otherwise the scan stops at the first bracket past ``limit``.
    """
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    in_str = esc = False
    for i, ch in enumerate(text):
        if i and not i % step:
            yield
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch == "[" or ch == "{":
            depth += 1
            if depth > limit:
                return True
        elif ch == "]" or ch == "}":
            depth -= 1
    return False


def exceeds(text: str, limit: int) -> bool:
    """:func:`nesting_exceeds` run to its answer in one go."""
    scan = nesting_exceeds(text, limit)
    while True:
        try:
            next(scan)
        except StopIteration as done:
            return bool(done.value)
