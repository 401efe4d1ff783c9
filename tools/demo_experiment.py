"""The demo experiment: a tiny pipeline with dependencies, run by embedded workers.

Usage: python tools/demo_experiment.py WORKSPACE
"""

from __future__ import annotations

import sys
from pathlib import Path

from xpmfs import Config, Meta, Param, PathGenerator, Task, experiment, field, tag


class Corpus(Config):
    """A toy corpus: the numbers 1..size."""

    size: Param[int] = 100


class Count(Task):
    """Counts the numbers of the corpus divisible by ``divisor``."""

    corpus: Param[Corpus]
    divisor: Param[int]
    output: Meta[Path] = field(default_factory=PathGenerator("count.txt"))

    def execute(self) -> None:
        count = sum(1 for n in range(1, self.corpus.size + 1) if n % self.divisor == 0)
        print(f"{count} numbers divisible by {self.divisor}")
        self.output.write_text(str(count))


class Report(Task):
    """Sums the counts into one report (runs after every Count)."""

    counts: Param[list[Count]]
    output: Meta[Path] = field(default_factory=PathGenerator("report.txt"))

    def execute(self) -> None:
        lines = [f"divisor {c.divisor}: {c.output.read_text()}" for c in self.counts]
        self.output.write_text("\n".join(lines) + "\n")
        print("\n".join(lines))


def main(workspace: str) -> None:
    with experiment(workspace, "demo"):
        corpus = Corpus.C(size=1000)
        counts = [Count.C(corpus=corpus, divisor=tag(d)).submit() for d in (2, 3, 5, 7)]
        report = Report.C(counts=counts).submit()
    print(f"\nreport ({report.output}):")
    print(Path(report.output).read_text())


if __name__ == "__main__":
    main(sys.argv[1])
