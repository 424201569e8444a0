"""Size limits on input, so hostile messages cannot exhaust memory or state.

Chosen well above what Moodle produces (a profile has tens of fields; the
longest standard value is the description textarea) and well below what
would hurt a worker. Exceeding one dead-letters the message with
LIMIT_EXCEEDED and names the limit.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    max_message_bytes: int = 512 * 1024
    max_id_chars: int = 255
    max_profile_entries: int = 500
    max_field_name_chars: int = 255
    max_string_chars: int = 64 * 1024
    max_array_items: int = 1000
    max_condition_json_chars: int = 64 * 1024


DEFAULT_LIMITS = Limits()
