"""Draw bench/results/performance.png from the JSON results of the benchmarks. Not a test.

    .venv/bin/pip install -e '.[bench]' && .venv/bin/python bench/chart.py

Each panel shows ratios measured side by side in one run (the absolute numbers are in the JSON
files and docs/performance.md), with the issue's target as a dashed line.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - backend first

RESULTS = Path(__file__).resolve().parent / "results"


def load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def main() -> None:
    panels = []
    mixes = [(name, data) for name, data in (("broad", load("rules_bench")), ("selective", load("rules_bench_selective")))
             if data]
    if mixes:
        panels.append(("Rule index vs naive loop (same run)",
                       [f"{r['rules']:,} rules, {name}" for name, data in mixes for r in data["results"]],
                       [r["speedup"] for _, data in mixes for r in data["results"]], 20, "speedup (x)"))
        panels.append(("Rule index at 10,000 rules", [f"{name} mix" for name, _ in mixes],
                       [data["results"][-1]["index_us"] for _, data in mixes], 50, "µs per profile", "limit"))
    streaming = load("streaming_bench")
    if streaming:
        labels, values = ["Faust pass-through / raw consume", "processor / Faust pass-through"], [
            streaming["ratio_b_over_a"], streaming["ratio_c_over_b"]]
        panels.append(("Streaming (same run)", labels, values, 0.8, "ratio"))
    backfill = load("backfill_bench")
    if backfill:
        panels.append((f"Backfill of {backfill['users']:,} users", ["backfill / bare RocksDB scan"],
                       [backfill["ratio_backfill_over_bare_scan"]], 0.25, "ratio"))
    rebuild = load("rebuild_bench")
    if rebuild:
        panels.append((f"Rebuild of {rebuild['events']:,} events", ["rebuild / Faust pass-through"],
                       [rebuild["ratio_rebuild_over_passthrough"]], float(rebuild["target_ratio"]), "ratio"))
    scale = load("scaleout_bench")
    if scale:
        runs = scale["runs"]
        panels.append((f"Scale-out on {scale['partitions']} partitions, {scale['cores']} cores (vs 1 worker)",
                       [f"{r['workers']} worker(s)" for r in runs], [r["throughput_vs_first"] for r in runs],
                       float(scale["cores"]), "throughput ratio", "cores (ceiling)"))
    if not panels:
        raise SystemExit("no results under bench/results/")
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.6 * len(panels)))
    axes = axes if len(panels) > 1 else [axes]
    for ax, (title, labels, values, target, unit, *name) in zip(axes, panels):
        bars = ax.barh(labels, values, color="#3b6ea5")
        ax.axvline(target, color="#c0392b", linestyle="--", label=f"{name[0] if name else 'target'} {target:g}")
        ax.bar_label(bars, labels=[f"{v:g}" for v in values], padding=3)
        ax.set_title(title)
        ax.set_xlabel(unit)
        log_scale = max(values + [target]) / max(min(values), 1e-3) > 50
        ax.set_xscale("log" if log_scale else "linear")
        if not log_scale:  # room for the bar labels
            ax.set_xlim(0, max(values + [target]) * 1.12)
        ax.legend(loc="lower right")
    fig.tight_layout()
    out = RESULTS / "performance.png"
    fig.savefig(out, dpi=110)
    print(out)


if __name__ == "__main__":
    main()
