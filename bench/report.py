"""Turn a results file of ``bench/run`` into the Markdown table of ``docs/performance.md``.

Usage: ``python3 bench/report.py bench/results/<file>.json`` — prints the machine
line and one table row per figure (value, baseline, ratio, goal, verdict, samples), so
the document's numbers are copied from a run, never typed by hand.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "–"
    if value != value:
        return "n/a"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "ms":
        return f"{value:,.0f} ms" if value >= 100 else f"{value:.1f} ms"
    if unit == "%":
        return f"{value:.2f} %"
    if unit == "req/s":
        return f"{value:,.0f} req/s"
    if unit == "MB":
        return f"{value:.1f} MB"
    return f"{value:.1f}{unit}"


def markdown(data: dict) -> str:
    m = data["machine"]
    lines = [
        f"Machine: {m.get('nproc')} CPUs ({m.get('cpu')}), {m.get('memory_gib')} GiB, kernel {m.get('kernel')}, "
        f"{m.get('os')}, {m.get('podman')}, Python {m.get('python')}. Date: {m.get('date')}. "
        f"Load average at start {' '.join(m.get('loadavg_start', []))}, at end {' '.join(m.get('loadavg_end', []))}; "
        f"run took {m.get('duration_s')} s. Command: `sudo {data.get('command')}`.",
        "",
        "| # | figure | value | baseline | ratio | goal | verdict | samples |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for f in data["figures"]:
        unit = f["unit"]
        ratio = f.get("ratio")
        verdict = {True: "ok", False: "**above goal**", None: ""}[f.get("meets_goal")]
        samples = ", ".join(_fmt(v, unit).replace(" ", "\u00a0") for v in f.get("samples") or [])
        if f.get("baseline_samples"):
            side = "ClusterIP" if f["key"] == "proxy.rps" else "by hand"
            samples += f" / {side}: " + ", ".join(_fmt(v, unit).replace(" ", "\u00a0") for v in f["baseline_samples"])
        baseline = (f"{_fmt(f['baseline'], unit)} {f.get('baseline_title', '')}".strip()
                    if f.get("baseline") is not None else "–")
        note = f" ({f['note']})" if f.get("note") else ""
        lines.append(f"| {f['key']} | {f['title']}{' (est.)' if f.get('estimated') else ''}{note} | "
                     f"{_fmt(f['value'], unit)} | {baseline} | "
                     f"{f'{ratio:.2f}x' if ratio is not None else '–'} | {f.get('goal_text') or '–'} | {verdict} | "
                     f"{samples} |")
    for note in data.get("notes") or []:
        lines.append(f"\nNote: {note}")
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: python3 bench/report.py RESULTS.json", file=sys.stderr)
        return 2
    print(markdown(json.loads(Path(sys.argv[1]).read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
