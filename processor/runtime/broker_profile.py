"""Every work-around for a broker's behaviour, as flags on one object chosen by configuration.

``BROKER_QUIRKS`` (a comma-separated list, the environment contract) names the profile. Runtime
code reads the flags below and never a broker's name, so what a work-around does, and for
which broker, is written down once, here.
"""

from __future__ import annotations

from dataclasses import dataclass

from processor.config import Settings
from processor.errors import ProcessorError


@dataclass(frozen=True, slots=True)
class BrokerProfile:
    """What the worker must do differently for a broker (Kafka needs nothing: the defaults)."""

    name: str = "kafka"
    # Records per produced batch on the clients whose topics are read back by offset (the users
    # changelog, Faust's producer); None: the client batches freely. 1 where the high watermark
    # (ListOffsets latest) is the base offset of the last batch + 1, so Faust's table recovery
    # would stop before the last records of a multi-record batch.
    records_per_batch: int | None = None
    # The high watermark may under-report the log end: tools read to each partition's EOF
    # instead of trusting ListOffsets (they do so on every broker; this flag documents why).
    high_watermark_underreports: bool = False
    # A consumer fetch's wait when FETCH_MAX_WAIT_MS is unset (None: Faust's own 1,500 ms).
    # Kafka answers a waiting fetch as soon as data arrives; a broker that answers only when
    # the wait ends makes the wait the input latency, hence a short one there.
    fetch_max_wait_ms: int | None = None


KAFKA = BrokerProfile()
# The embedded development/test broker (processor/broker.py); its limits are in docs/operations.md.
TANSU = BrokerProfile("tansu", records_per_batch=1, high_watermark_underreports=True, fetch_max_wait_ms=50)
PROFILES = {p.name: p for p in (KAFKA, TANSU)}


class UnknownBrokerProfile(ProcessorError):
    def __init__(self, names: list[str]) -> None:
        super().__init__("UNKNOWN_BROKER_QUIRKS",
                         f"BROKER_QUIRKS names {', '.join(names)}, which this version does not know; "
                         f"known: {', '.join(sorted(PROFILES))} (or unset, for Kafka)", "$env.BROKER_QUIRKS")


def profile_for(settings: Settings) -> BrokerProfile:
    """The profile ``BROKER_QUIRKS`` names (unset: Kafka's); at most one broker may be named."""
    names = sorted(settings.broker_quirks)
    unknown = [n for n in names if n not in PROFILES]
    if unknown or len(names) > 1:
        raise UnknownBrokerProfile(unknown or names)
    return PROFILES[names[0]] if names else KAFKA


def fetch_max_wait_ms(settings: Settings, profile: BrokerProfile) -> int | None:
    """FETCH_MAX_WAIT_MS if set, else the profile's default (None: Faust's)."""
    return settings.fetch_max_wait_ms if settings.fetch_max_wait_ms is not None else profile.fetch_max_wait_ms
