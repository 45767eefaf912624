"""Charts and the README table from a Lambda-share bench result.

Reads bench/results/lambda-share-<date>.json (the newest, or the one
given) and writes, for the run at 20 ms per request:

  docs/lambda-share-duration.svg   warm duration against memory, per function
  docs/lambda-share-cost.svg       Lambda cost per unit of work against memory

and prints the Markdown table the README shows. Plain SVG, no plotting
library: the script needs only Python.

Usage: python3 bench/charts.py [RESULTS.json]
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


def series(rows: list[dict]) -> tuple[dict, dict]:
    """(duration ms, cost $) by curve name, each a list of (memory MB, value)."""
    duration: dict[str, list] = {}
    cost: dict[str, list] = {}
    for row in rows:
        mb = row["memory_mb"]
        for case in row["mover"]:
            n = case["objects_per_invocation"]
            duration.setdefault(f"mover, {n} object(s)/invocation", []).append((mb, case["warm_ms"]))
            cost.setdefault(f"mover, per 1,000 objects, batch {n}", []).append((mb, row["cost"][f"mover_per_1000_objects_batch_{n}"]))
        for name in ("csv-merger", "batch-generator", "results-aggregator"):
            label = {"csv-merger": "csv-merger, 1,000-file batch", "batch-generator": "batch-generator, 10,000 files",
                     "results-aggregator": "results-aggregator, 10 batches"}[name]
            duration.setdefault(label, []).append((mb, row[name]["warm_ms"]))
        cost.setdefault("csv-merger, per 1,000-file batch", []).append((mb, row["cost"]["csv_merger_per_1000_file_batch"]))
        cost.setdefault("whole merge, per 300,000-file run", []).append((mb, row["cost"]["merge_per_300k_run_lambda"]))
    return duration, cost


def svg(title: str, unit: str, curves: dict[str, list], memories: list[int]) -> str:
    width, height, left, right, top, bottom = 760, 420, 80, 250, 40, 50
    values = [v for points in curves.values() for _, v in points if v > 0]
    lo, hi = math.floor(math.log10(min(values))), math.ceil(math.log10(max(values)))
    hi = max(hi, lo + 1)
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(mb: int) -> float:
        return left + plot_w * memories.index(mb) / max(len(memories) - 1, 1)

    def y(v: float) -> float:
        return top + plot_h * (hi - math.log10(v)) / (hi - lo)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="22" font-size="15" font-weight="bold">{title}</text>',
    ]
    for exp in range(lo, hi + 1):
        yy = y(10**exp)
        out.append(f'<line x1="{left}" y1="{yy:.1f}" x2="{left + plot_w}" y2="{yy:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{yy + 4:.1f}" text-anchor="end">{10**exp:g}</text>')
    for mb in memories:
        out.append(f'<line x1="{x(mb):.1f}" y1="{top}" x2="{x(mb):.1f}" y2="{top + plot_h}" stroke="#eee"/>')
        out.append(f'<text x="{x(mb):.1f}" y="{top + plot_h + 18}" text-anchor="middle">{mb}</text>')
    out.append(f'<text x="{left + plot_w / 2}" y="{height - 8}" text-anchor="middle">memory (MB); CPU share = MB / 1,769 of a core</text>')
    out.append(f'<text x="16" y="{top + plot_h / 2}" transform="rotate(-90 16 {top + plot_h / 2})" text-anchor="middle">{unit} (log scale)</text>')
    for i, (name, points) in enumerate(curves.items()):
        colour = COLOURS[i % len(COLOURS)]
        path = " ".join(f"{x(mb):.1f},{y(v):.1f}" for mb, v in points if v > 0)
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for mb, v in points:
            if v > 0:
                out.append(f'<circle cx="{x(mb):.1f}" cy="{y(v):.1f}" r="3" fill="{colour}"/>')
        ly = top + 14 + 18 * i
        out.append(f'<line x1="{width - right + 12}" y1="{ly - 4}" x2="{width - right + 32}" y2="{ly - 4}" stroke="{colour}" stroke-width="2"/>')
        out.append(f'<text x="{width - right + 36}" y="{ly}">{name}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def table(report: dict) -> str:
    lines = [
        "| latency | memory | mover 1 obj: warm ms / CPU µs | mover 10: ms / µs per obj | mover 100: ms / µs per obj "
        "| csv-merger 1,000 files: cold ms / warm ms / µs per file / RSS MiB | batch-generator 10k: ms | aggregator: ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        m = {c["objects_per_invocation"]: c for c in row["mover"]}
        merger = row["csv-merger"]
        lines.append(
            f"| {row['latency_ms']} ms | {row['memory_mb']} MB "
            + "".join(f"| {m[n]['warm_ms']} / {m[n]['cpu_us_per_object']} " for n in (1, 10, 100))
            + f"| {merger['cold_start_ms']} / {merger['warm_ms']} / {merger['cpu_us_per_object']} / {merger['peak_rss_mib']} "
            + f"| {row['batch-generator']['warm_ms']} | {row['results-aggregator']['warm_ms']} |"
        )
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1:
        path = Path(sys.argv[1])
    else:
        path = sorted((ROOT / "bench" / "results").glob("lambda-share-*.json"))[-1]
    report = json.loads(path.read_text())
    rows = [r for r in report["rows"] if r["latency_ms"] == 20] or report["rows"]
    memories = [r["memory_mb"] for r in rows]
    duration, cost = series(rows)
    note = f"{rows[0]['latency_ms']} ms per S3 request, {report['cpu_share']}"
    (ROOT / "docs" / "lambda-share-duration.svg").write_text(
        svg(f"Warm duration by memory ({note.split(',')[0]})", "milliseconds", duration, memories)
    )
    (ROOT / "docs" / "lambda-share-cost.svg").write_text(
        svg("Lambda cost by memory (arm64, duration + requests)", "US dollars", cost, memories)
    )
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    print(f"from {shown} ({report['date']}, {report['commit']}, {report['machine']}; {report['cpu_share']})\n")
    print(table(report))


if __name__ == "__main__":
    main()
