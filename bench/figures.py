"""Benchmark figures: one measured value beside its baseline (or goal), and the table that prints them.

Why a module of its own: every benchmark in ``bench/`` reports the same way (median of
several repetitions, the baseline measured in the same run, the ratio, the goal), and
``bench/run`` prints them all in one table and saves them as JSON for
``docs/performance.md``, so the shape lives in one place.
"""
from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True, kw_only=True)
class Figure:
    """One line of the results table.

    ``value`` and ``baseline`` are medians in ``unit``; ``goal`` is an upper bound on
    ``ratio`` when there is a baseline, else on ``value`` itself. ``samples`` keeps the
    raw repetitions so a reader can see the spread behind a median.
    """

    key: str  # short id, e.g. "ready.10"
    title: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_title: str = ""
    goal: float | None = None
    goal_text: str = ""
    samples: tuple[float, ...] = ()
    baseline_samples: tuple[float, ...] = ()
    estimated: bool = False  # extrapolated from a sample, not measured whole
    note: str = ""
    command: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or not self.baseline:
            return None
        return self.value / self.baseline

    @property
    def meets_goal(self) -> bool | None:
        if self.goal is None:
            return None
        measured = self.ratio if self.baseline is not None else self.value
        return measured is not None and measured <= self.goal

    def to_json(self) -> dict:
        data = asdict(self)
        data["ratio"] = self.ratio
        data["meets_goal"] = self.meets_goal
        return data


def median(values: Sequence[float]) -> float:
    """The median, or NaN for no values (a failed benchmark still prints a line)."""
    return statistics.median(values) if values else float("nan")


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if value != value:  # NaN
        return "n/a"
    if unit == "s":
        return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"
    if unit == "ms":
        return f"{value:.1f} ms" if value < 1000 else f"{value:,.0f} ms"
    if unit == "%":
        return f"{value:.2f} %"
    if unit == "MB":
        return f"{value:.1f} MB"
    if unit == "req/s":
        return f"{value:,.0f} req/s"
    return f"{value:g} {unit}"


def format_table(figures: Iterable[Figure]) -> str:
    """A fixed-width table: figure, value, baseline, ratio, goal, verdict."""
    rows = [("figure", "value", "baseline", "ratio", "goal", "")]
    for f in figures:
        ratio = f.ratio
        verdict = {True: "ok", False: "ABOVE GOAL", None: ""}[f.meets_goal]
        rows.append((
            f.title + (" (est.)" if f.estimated else ""),
            _fmt(f.value, f.unit),
            ((_fmt(f.baseline, f.unit) + (f" {f.baseline_title}" if f.baseline_title else ""))
             if f.baseline is not None else "-"),
            f"{ratio:.2f}x" if ratio is not None and ratio == ratio else "-",
            f.goal_text or "-",
            verdict,
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


@dataclass(kw_only=True)
class Results:
    """Everything one run of ``bench/run`` produced: figures, profiles, and the machine it ran on."""

    machine: dict = field(default_factory=dict)
    command: str = ""
    figures: list[Figure] = field(default_factory=list)
    profiles: dict[str, str] = field(default_factory=dict)  # name -> pyinstrument text
    notes: list[str] = field(default_factory=list)

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        print(format_table([figure]).splitlines()[-1], flush=True)
        return figure

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({
            "machine": self.machine, "command": self.command, "notes": self.notes,
            "figures": [f.to_json() for f in self.figures], "profiles": self.profiles,
        }, indent=2))
