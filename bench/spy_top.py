"""Summarise a py-spy collapsed-stack file (``py-spy record --format raw``). Not a test.

    .venv/bin/python bench/spy_top.py FILE [--top 25] [--match TEXT]

Prints the functions with the most samples on the stack (inclusive) and at the top of the stack
(self), as shares of all samples: where a worker spends its time, grouped by function.
"""

from __future__ import annotations

import argparse
from collections import Counter


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--match", default="", help="only stacks containing this text")
    args = ap.parse_args()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in open(args.file, encoding="utf-8", errors="replace"):
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit() or args.match not in stack:
            continue
        n = int(count)
        total += n
        frames = [f.split(" (")[0] + " (" + f.split(" (")[-1].split(":")[0].rsplit("/", 1)[-1] + ")"
                  for f in stack.split(";") if f]
        for f in set(frames):
            inclusive[f] += n
        if frames:
            own[frames[-1]] += n
    print(f"{total} samples")
    for title, counter in (("inclusive", inclusive), ("self", own)):
        print(f"\n-- {title}")
        for f, n in counter.most_common(args.top):
            print(f"{n / total:6.1%}  {f}")


if __name__ == "__main__":
    main()
