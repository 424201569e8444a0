"""Correctness oracle for tests and benchmarks (pure Python: no faust, no Kafka).

* :mod:`tests.support.oracle.workload` -- deterministic, seeded workloads: catalog
  setup, rules, user events and interleaved rule changes as one ordered list
  of steps (``("command", Command)`` / ``("event", UserEvent)``).
* :mod:`tests.support.oracle.oracle` -- the membership every consumer must end up
  with, computed from the *final* catalog and the *final* profiles only.
* :mod:`tests.support.oracle.checker` -- folds membership changes as a consumer
  would and reports every difference from the oracle.
* :mod:`tests.support.oracle.simulate` -- drives the processor's own pure engine
  over a workload in memory (an end-to-end cross-check without a broker).

Typical use::

    from tests.support.oracle import generate, expected_membership, check

    wl = generate(seed=7, n_events=3000)
    ...  # feed wl.steps to the processor (or to simulate.run_engine)
    report = check(changes, expected_membership(wl.steps))
    assert report.ok, str(report)
"""

from tests.support.oracle.checker import Difference, Report, check
from tests.support.oracle.oracle import Folded, OracleError, expected_membership, fold, membership
from tests.support.oracle.workload import COMMAND, EVENT, Step, Workload, generate

__all__ = [
    "COMMAND",
    "EVENT",
    "Difference",
    "Folded",
    "OracleError",
    "Report",
    "Step",
    "Workload",
    "check",
    "expected_membership",
    "fold",
    "generate",
    "membership",
]
