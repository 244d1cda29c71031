"""The benchmark as a picture (bench/results.png): scaling of the lifecycle, and where the requests go.

Left: tasks per second through the whole lifecycle against N, for sosw 0.7.51 and this stack, at
each invoke latency (log scale: the two stacks are an order of magnitude apart). Right: DynamoDB
requests per task by phase, stacked, for each stack and N. Drawn from bench/results.json with
matplotlib, which only the ``bench`` extras install (``pip install -e '.[bench]'``; ``make bench``
does it).

    .venv/bin/python -m bench.chart      # re-draw bench/results.png from bench/results.json
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.report import lifecycle_figures

__all__ = ["PHASES", "render_chart"]

#: Phases in the order a task lives them; "guard" is our duplicate-delivery guard (sosw has none).
PHASES = ("create", "orchestrate", "guard", "complete", "scavenge")
STACKS = {"sosw": ("sosw 0.7.51", "#9e9e9e"), "ours": ("this stack", "#1f77b4")}
PHASE_COLOURS = {
    "create": "#4c72b0",
    "orchestrate": "#dd8452",
    "guard": "#c44e52",
    "complete": "#55a868",
    "scavenge": "#8172b3",
}


def render_chart(results: dict[str, Any], path: Path) -> Path:
    """Draw the two panels into ``path`` (PNG) and return it."""
    import matplotlib

    matplotlib.use("Agg")  # no display: a file only
    import matplotlib.pyplot as plt

    figures = lifecycle_figures(results)
    ns = sorted({n for (_stack, n, _delay) in figures})
    delays = sorted({d for (_stack, _n, d) in figures})
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [1, 1.2]})

    for stack, (label, colour) in STACKS.items():
        for index, (delay, style) in enumerate(zip(delays, ("-", "--", ":"), strict=False)):
            points = [(n, figures.get((stack, n, delay), {}).get("throughput")) for n in ns]
            points = [(n, v) for n, v in points if v]
            if not points:
                continue
            xs, ys = zip(*points, strict=True)
            left.plot(xs, ys, style, marker="o", color=colour, label=f"{label}, invoke {delay} ms")
            for x, y in points:
                # The faster latency's figure above its point, the other's below: close lines stay readable.
                offset = (6, 4) if index else (6, -12)
                left.annotate(f"{y:,.0f}", (x, y), textcoords="offset points", xytext=offset, fontsize=8)
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xticks(ns, [f"{n:,}" for n in ns])
    left.minorticks_off()
    left.set_xlabel("N (tasks per run)")
    left.set_ylabel("tasks per second, whole lifecycle (log)")
    left.set_title("Lifecycle throughput against N")
    left.grid(True, which="major", alpha=0.3)
    left.legend(fontsize=8, loc="center right")

    bars = [(stack, n) for n in ns for stack in STACKS if (stack, n, delays[0]) in figures]
    bottoms = [0.0] * len(bars)
    positions = range(len(bars))
    for phase in PHASES:
        heights = []
        for stack, n in bars:
            values = [figures.get((stack, n, d), {}).get("phase_requests_per_task", {}).get(phase) for d in delays]
            values = [v for v in values if v is not None]
            heights.append(sum(values) / len(values) if values else 0.0)
        if not any(heights):
            continue
        label = "guard (duplicate delivery)" if phase == "guard" else phase
        right.bar(positions, heights, bottom=bottoms, color=PHASE_COLOURS[phase], label=label, width=0.6)
        bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    for x, total in zip(positions, bottoms, strict=True):
        right.annotate(f"{total:.2f}", (x, total), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=9)
    right.set_xticks(list(positions), [f"{STACKS[s][0]}\nN = {n:,}" for s, n in bars], fontsize=8)
    right.set_ylabel("DynamoDB requests per task")
    right.set_title("DynamoDB requests per task by phase (mean over invoke latencies)")
    right.set_ylim(0, max(bottoms, default=1.0) * 1.35)  # room for the legend above the bars
    right.legend(fontsize=8, title="phase", title_fontsize=8, loc="upper center", ncol=3)
    right.grid(True, axis="y", alpha=0.3)

    fig.suptitle(f"make bench, {results.get('date', '')}, {results.get('machine', {}).get('cores', '?')} cores")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    import json

    bench = Path(__file__).resolve().parent
    print(render_chart(json.loads((bench / "results.json").read_text()), bench / "results.png"))
