"""``moodle reconcile``: compare each managed segment with its Moodle cohort, report and repair drift.

Desired = the processor's members (``GET /sites/{site}/segments/{segment}/members``, all pages);
actual = Moodle's cohort members (``core_cohort_get_cohort_members``, Moodle ids mapped back to
our user ids). *Missing* members are in the segment but not the cohort; *extra* ones are in the
cohort but not the segment (a managed cohort holds exactly the automation's members).

``--repair`` applies the difference through the same write path as ``sync``
(:class:`~processor.connectors.moodle.cohorts.CohortWriter`), then reads both sides again and
reports what is left. A guard refuses to remove more than ``max_removals`` members in one run (a
rule typo that empties a segment should not silently un-enrol a department): raise it on purpose.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from processor.connectors.moodle.cohorts import Assertion, CohortWriter
from processor.connectors.moodle.processor_api import ProcessorApi
from processor.connectors.moodle.progress import Progress


@dataclass
class SegmentDrift:
    segment_id: str
    cohort_idnumber: str
    cohort_id: int | None
    members: int
    cohort_members: int
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    unmapped: list[int] = field(default_factory=list)  # Moodle ids with no user id under the mapping
    error: str = ""

    @property
    def drift(self) -> int:
        return len(self.missing) + len(self.extra) + len(self.unmapped) + (1 if self.error else 0)

    def as_dict(self, sample: int = 50) -> dict[str, Any]:
        return {"segment_id": self.segment_id, "cohort_idnumber": self.cohort_idnumber, "cohort_id": self.cohort_id,
                "members": self.members, "cohort_members": self.cohort_members, "missing": len(self.missing),
                "extra": len(self.extra), "unmapped": len(self.unmapped), "error": self.error or None,
                "sample_missing": sorted(self.missing)[:sample], "sample_extra": sorted(self.extra)[:sample]}


@dataclass
class ReconcileReport:
    site_id: str
    segments: list[SegmentDrift] = field(default_factory=list)
    repaired: dict[str, int] = field(default_factory=dict)
    repair_failures: list[dict[str, str]] = field(default_factory=list)
    after_repair: list[SegmentDrift] | None = None
    refused: str = ""
    seconds: float = 0.0

    @property
    def drift(self) -> int:
        return sum(s.drift for s in self.segments)

    @property
    def remaining(self) -> int:
        return sum(s.drift for s in (self.after_repair if self.after_repair is not None else self.segments))

    def as_dict(self) -> dict[str, Any]:
        return {"site_id": self.site_id, "drift": self.drift, "remaining": self.remaining,
                "segments": [s.as_dict() for s in self.segments], "repaired": self.repaired,
                "repair_failures": self.repair_failures[:50], "refused": self.refused or None,
                "after_repair": None if self.after_repair is None else [s.as_dict() for s in self.after_repair],
                "seconds": self.seconds}


class Reconciler:
    def __init__(self, api: ProcessorApi, writer: CohortWriter, progress: Progress | None = None) -> None:
        self.api = api
        self.writer = writer
        self.resolver = writer.resolver
        self.mapping = writer.mapping
        self.site = self.mapping.site_id
        self.progress = progress or Progress(tty=False)

    def managed_segments(self, only: list[str] | None = None) -> list[str]:
        segs = [s["segment_id"] for s in self.api.segments(self.site) if s["managed"]]
        return [s for s in segs if not only or s in only]

    def compare(self, segment: str) -> SegmentDrift:
        want = self.api.members(self.site, segment)
        idn = self.mapping.cohort_for(segment)
        cid = self.resolver.cohort_id(idn)
        if cid is None:
            return SegmentDrift(segment, idn, None, len(want), 0, missing=sorted(want),
                                error=f"no cohort with idnumber {idn!r} in Moodle")
        rows = self.writer.client.call("core_cohort_get_cohort_members", cohortids=[cid])
        ids = [int(u) for r in rows for u in r.get("userids", [])]
        keys = self.resolver.user_keys(ids)
        have = set(keys.values())
        return SegmentDrift(segment, idn, cid, len(want), len(ids), missing=sorted(want - have),
                            extra=sorted(have - want), unmapped=sorted(i for i in ids if i not in keys))

    def run(self, only: list[str] | None = None, repair: bool = False, max_removals: int = 1000) -> ReconcileReport:
        started = time.monotonic()
        report = ReconcileReport(self.site)
        segments = self.managed_segments(only)
        self.progress.task("segments", total=len(segments))
        for seg in segments:
            report.segments.append(self.compare(seg))
            self.progress.advance("segments")
        self.progress.finish("segments")
        if repair and report.drift:
            removals = sum(len(s.extra) for s in report.segments)
            fixes = [Assertion(s.segment_id, u, True) for s in report.segments for u in s.missing]
            if removals > max_removals:
                report.refused = (f"repair would remove {removals} members (more than --max-removals "
                                  f"{max_removals}); adds applied, removals left for a deliberate run")
            else:
                fixes += [Assertion(s.segment_id, u, False) for s in report.segments for u in s.extra]
            applied = self.writer.apply(fixes)
            report.repaired = {"added": sum(1 for a in applied.applied if a.member),
                               "removed": sum(1 for a in applied.applied if not a.member),
                               "already": len(applied.already), "failed": len(applied.failed)}
            report.repair_failures = [{"segment_id": f.assertion.segment_id, "user_id": f.assertion.user_id,
                                       "code": f.code, "message": f.message} for f in applied.failed]
            report.after_repair = [self.compare(s) for s in segments]
        report.seconds = round(time.monotonic() - started, 3)
        return report


def write_metrics(report: ReconcileReport, path: Path) -> None:
    """Prometheus text file (node_exporter's textfile collector) with the drift per segment."""
    from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

    r = CollectorRegistry()
    missing = Gauge("moodle_reconcile_missing", "Segment members missing from the cohort", ["site", "segment"],
                    registry=r)
    extra = Gauge("moodle_reconcile_extra", "Cohort members not in the segment", ["site", "segment"], registry=r)
    drift = Gauge("moodle_reconcile_drift", "Differences found (before repair)", ["site"], registry=r)
    remaining = Gauge("moodle_reconcile_remaining", "Differences left after the run", ["site"], registry=r)
    last = Gauge("moodle_reconcile_last_run_timestamp_seconds", "When reconcile last finished", ["site"], registry=r)
    for s in report.segments:
        missing.labels(report.site_id, s.segment_id).set(len(s.missing))
        extra.labels(report.site_id, s.segment_id).set(len(s.extra))
    drift.labels(report.site_id).set(report.drift)
    remaining.labels(report.site_id).set(report.remaining)
    last.labels(report.site_id).set(time.time())
    write_to_textfile(str(path), r)
