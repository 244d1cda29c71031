"""Figures from the raw results: the per-run derived numbers, the targets of issue 6, the markdown."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

#: The phases of one task's life; the duplicate-delivery guard ("guard") is reported on its own.
CORE = ("create", "orchestrate", "complete", "scavenge")


def derived(run: dict[str, Any], cores: int = 2) -> dict[str, Any]:
    """Rates and per-task costs of one lifecycle run."""
    n, phases = run["n"], run["phases"]

    def total(key: str, names: Iterable[str] = CORE) -> float:
        return sum(phases[p][key] for p in names if p in phases)

    seconds = total("seconds", phases)
    guard = phases.get("guard")
    left = run.get("left_after_reports")
    if left is None:  # older results: the Scavenger wrote nothing if the completions had closed every task
        left = n if set(phases["scavenge"]["by_operation"]) - {"Query"} else 0
    archive = _fmt(left / phases["scavenge"]["seconds"], 0) if left else "closed on report"
    return {
        "create_rate": n / phases["create"]["seconds"],
        "dispatch_rate": n / phases["orchestrate"]["seconds"],
        "report_rate": n / phases["complete"]["seconds"],
        # Tasks the Scavenger had to archive per second; None when the completions closed them all at once.
        "archive_rate": left / phases["scavenge"]["seconds"] if left else None,
        "archive_cell": archive,
        "lifecycle_seconds": seconds,
        "throughput": n / seconds,
        "throughput_without_guard": n / (seconds - guard["seconds"]) if guard else n / seconds,
        "requests_per_task": total("requests") / n,
        "wcu_per_task": total("wcu") / n,
        "wcu_aws_per_task": total("wcu_aws") / n,
        "rcu_per_task": total("rcu") / n,
        "guard_requests_per_task": guard["requests"] / n if guard else None,
        "guard_wcu_aws_per_task": guard["wcu_aws"] / n if guard else None,
        "phase_requests_per_task": {p: phases[p]["requests"] / n for p in phases},
        "others_cpu_share": _others_share(phases.values(), cores),
    }


def _others_share(phases: Iterable[dict[str, Any]], cores: int) -> float | None:
    """Share of the machine's CPU capacity used by other processes (other sessions) during these phases."""
    others = seconds = 0.0
    for phase in phases:
        cpu = phase.get("cpu_seconds", {})
        if "machine" not in cpu:
            return None
        own = sum(cpu.get(k, 0.0) for k in ("stack", "dynamodb_local", "lambda_endpoint"))
        others += max(0.0, cpu["machine"] - own)
        seconds += phase["seconds"]
    return others / (cores * seconds) if seconds else None


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def lifecycle_figures(results: dict[str, Any]) -> dict[tuple[str, int, int], dict[str, Any]]:
    """Medians per (stack, N, delay) over the runs whose end state checked out."""
    groups: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
    for run in results["lifecycle"]:
        groups.setdefault((run["stack"], run["n"], run["delay_ms"]), []).append(run)
    figures = {}
    for key, runs in groups.items():
        good = [derived(r, results["machine"]["cores"] or 1) for r in runs if r["ok"]]
        entry: dict[str, Any] = {"runs": len(runs), "failed": len(runs) - len(good)}
        if good:
            for metric in good[0]:
                if metric == "phase_requests_per_task":
                    phases = good[0][metric].keys()
                    entry[metric] = {p: _median([g[metric][p] for g in good]) for p in phases}
                elif metric == "archive_cell":
                    rate = [g["archive_rate"] for g in good]
                    entry[metric] = _fmt(_median(rate), 0) if all(r is not None for r in rate) else good[0][metric]
                elif all(g[metric] is not None for g in good):
                    entry[metric] = _median([g[metric] for g in good])
                else:
                    entry[metric] = None
        figures[key] = entry
    return figures


def retry_figures(run: dict[str, Any]) -> dict[str, Any]:
    phases, n = run["phases"], run["n"]
    if not phases:
        return {}
    return {
        "requests_per_task": sum(p["requests"] for p in phases.values()) / n,
        "wcu_per_task": sum(p["wcu"] for p in phases.values()) / n,
        "wcu_aws_per_task": sum(p["wcu_aws"] for p in phases.values()) / n,
        "rcu_per_task": sum(p["rcu"] for p in phases.values()) / n,
        "phase_requests_per_task": {k: p["requests"] / n for k, p in phases.items()},
    }


def _errors(phase: dict[str, Any]) -> str:
    """DynamoDB and Lambda errors of a phase (a refused condition is an error to DynamoDB, not to the stack)."""
    errors = {**phase.get("errors", {}), **{f"Lambda {k}": v for k, v in phase.get("lambda_errors", {}).items()}}
    return ", ".join(f"{k} {v}" for k, v in sorted(errors.items())) or "none"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _flat(values: list[float], tolerance: float = 0.10) -> bool:
    return bool(values) and max(values) - min(values) <= tolerance * min(values) + 1e-9


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def summarize(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of the targets table (issue 6), with whether each target is met."""
    figures = lifecycle_figures(results)
    ns = sorted({n for (_s, n, _d) in figures})
    delays = sorted({d for (_s, _n, d) in figures})
    high = max(delays) if delays else 0

    def over_delays(stack: str, n: int, metric: str) -> float | None:
        values = [figures[(stack, n, d)].get(metric) for d in delays if (stack, n, d) in figures]
        return _median([v for v in values if v is not None])

    def at(stack: str, n: int, delay: int, metric: str) -> float | None:
        return figures.get((stack, n, delay), {}).get(metric)

    def ratio(ours: float | None, sosw: float | None) -> float | None:
        return None if ours is None or sosw is None or not ours or not sosw else ours / sosw

    def fewer(ours: list[float | None], sosw: list[float | None]) -> str:
        """Lower is better: 'N x fewer' (or 'N x more')."""
        cells = []
        for o, s in zip(ours, sosw, strict=True):
            if not o or not s:
                cells.append("n/a")
            else:
                cells.append(f"{s / o:.2f}x fewer" if o <= s else f"{o / s:.2f}x more")
        return " / ".join(cells)

    def pair(values: list[float | None], digits: int = 1) -> str:
        return " / ".join(_fmt(v, digits) for v in values)

    rows = []
    failed = any(not r["ok"] for key in ("lifecycle", "retry", "scaling") for r in results.get(key, []))
    n_label = " / ".join(f"{n:,}" for n in ns)

    if ns:  # the lifecycle workload ran
        # requests per task, full lifecycle
        sosw = [over_delays("sosw", n, "requests_per_task") for n in ns]
        ours = [over_delays("ours", n, "requests_per_task") for n in ns]
        guard = [over_delays("ours", n, "guard_requests_per_task") for n in ns]
        rows.append(
            {
                "figure": f"DynamoDB requests per task, full lifecycle (N = {n_label})",
                "sosw": pair(sosw, 2),
                "ours": pair(ours, 2) + f" (guard: +{pair(guard, 2)})",
                "ratio": fewer(ours, sosw),
                "target": "≤ 3 (guard on its own)",
                "met": all(v is not None and v <= 3 for v in ours),
            }
        )
        # write capacity per task
        sosw_w = [over_delays("sosw", n, "wcu_aws_per_task") for n in ns]
        ours_w = [over_delays("ours", n, "wcu_aws_per_task") for n in ns]
        sosw_l = [over_delays("sosw", n, "wcu_per_task") for n in ns]
        ours_l = [over_delays("ours", n, "wcu_per_task") for n in ns]
        rows.append(
            {
                "figure": f"write capacity units per task, full lifecycle (N = {n_label}), AWS rule [DynamoDB Local's "
                "figure]",
                "sosw": f"{pair(sosw_w)} [{pair(sosw_l)}]",
                "ours": f"{pair(ours_w)} [{pair(ours_l)}]",
                "ratio": fewer(ours_w, sosw_w),
                "target": "below sosw",
                "met": all(o is not None and s is not None and o < s for o, s in zip(ours_w, sosw_w, strict=True)),
            }
        )
        # creating tasks
        sosw_c = [over_delays("sosw", n, "create_rate") for n in ns]
        ours_c = [over_delays("ours", n, "create_rate") for n in ns]
        ratios_c = [ratio(o, s) for o, s in zip(ours_c, sosw_c, strict=True)]
        flat = len(ours_c) > 1 and all(v is not None for v in ours_c) and ours_c[-1] >= 0.9 * ours_c[0]
        rows.append(
            {
                "figure": f"creating tasks, tasks/s (N = {n_label})",
                "sosw": pair(sosw_c, 0),
                "ours": pair(ours_c, 0),
                "ratio": pair(ratios_c) + "x",
                "target": "≥ 20x sosw, flat in N (within 10%)",
                "met": all(r is not None and r >= 20 for r in ratios_c) and flat,
            }
        )
        # dispatch rate
        sosw_d = [at("sosw", n, high, "dispatch_rate") for n in ns]
        ours_d = [at("ours", n, high, "dispatch_rate") for n in ns]
        ratios_d = [ratio(o, s) for o, s in zip(ours_d, sosw_d, strict=True)]
        rows.append(
            {
                "figure": f"dispatch rate at {high} ms invoke latency, invocations/s (N = {n_label})",
                "sosw": pair(sosw_d, 0),
                "ours": pair(ours_d, 0),
                "ratio": pair(ratios_d) + "x",
                "target": "≥ 10x sosw",
                "met": all(r is not None and r >= 10 for r in ratios_d),
            }
        )
        # lifecycle throughput
        sosw_t = [at("sosw", n, high, "throughput") for n in ns]
        ours_t = [at("ours", n, high, "throughput") for n in ns]
        ours_t_ng = [at("ours", n, high, "throughput_without_guard") for n in ns]
        ratios_t = [ratio(o, s) for o, s in zip(ours_t, sosw_t, strict=True)]
        ratios_t_ng = [ratio(o, s) for o, s in zip(ours_t_ng, sosw_t, strict=True)]
        rows.append(
            {
                "figure": f"lifecycle throughput at {high} ms invoke latency, tasks/s (N = {n_label}; ours with the "
                "guard [without])",
                "sosw": pair(sosw_t),
                "ours": f"{pair(ours_t)} [{pair(ours_t_ng)}]",
                "ratio": f"{pair(ratios_t)}x [{pair(ratios_t_ng)}x]",
                "target": "≥ 10x sosw (at N = 1,000)",
                "met": ratios_t[0] is not None and ratios_t[0] >= 10,
            }
        )

    # retry workload
    retry = {r["stack"]: r for r in results.get("retry", [])}
    sosw_r = retry_figures(retry["sosw"]).get("requests_per_task") if "sosw" in retry else None
    ours_r = retry_figures(retry["ours"]).get("requests_per_task") if "ours" in retry else None
    attempts = "3 attempts"
    rows.append(
        {
            "figure": f"DynamoDB requests per task, retry workload ({attempts}, N = "
            f"{retry['ours']['n'] if 'ours' in retry else '?'})",
            "sosw": _fmt(sosw_r),
            "ours": _fmt(ours_r),
            "ratio": fewer([ours_r], [sosw_r]),
            "target": "≤ 10",
            "met": ours_r is not None and ours_r <= 10,
        }
    )
    # scaling
    scaling = {r["stack"]: r for r in results.get("scaling", [])}
    for phase, label in (("orchestrate", "Orchestrator"), ("scavenge", "Scavenger")):
        cells = {}
        flat_ok = False
        for stack in ("sosw", "ours"):
            steps = scaling.get(stack, {}).get("steps", [])
            requests = [s["phases"][phase]["requests"] for s in steps]
            rcu = [s["phases"][phase]["rcu"] for s in steps]
            cells[stack] = (
                f"{' → '.join(str(r) for r in requests)} requests; {' → '.join(_fmt(r) for r in rcu)} RCU"
                if steps
                else "n/a"
            )
            if stack == "ours":
                flat_ok = _flat([float(r) for r in requests]) and _flat(rcu)
        levels = scaling.get("ours", scaling.get("sosw", {})).get("steps", [])
        level_label = " → ".join(f"{s['queued']:,}" for s in levels)
        rows.append(
            {
                "figure": f"cost of one {label} run, {level_label} queued",
                "sosw": cells["sosw"],
                "ours": cells["ours"],
                "ratio": "",
                "target": "flat (within 10%)",
                "met": flat_ok,
            }
        )
    if failed:
        for row in rows:
            row["note"] = "some runs failed their end-state check: see below"
    return rows


def render_markdown(results: dict[str, Any]) -> str:
    info = results["machine"]
    lines = [
        "# Benchmark: this stack vs sosw 0.7.51",
        "",
        f"`{results['command']}` on {results['date']}: {info['cores']} cores ({info['platform']}), Python "
        f"{info['python']}, boto3 {info['boto3']}, sosw baseline {info['sosw_baseline']}, DynamoDB Local; "
        f"scale {results['scale']}, {results['repeat']} run(s) per lifecycle configuration (medians); "
        f"the whole benchmark took {results['wall_seconds'] / 60:.1f} min. Load average (1 min) at the start "
        f"{info.get('load_start', 'n/a')}, at the end {info.get('load_end', 'n/a')}.",
        "",
        "## Targets (issue 6)",
        "",
        "| figure | sosw 0.7.51 | ours | ours vs sosw | target | met |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in results["summary"]:
        met = "yes" if row["met"] else "**no**"
        lines.append(f"| {row['figure']} | {row['sosw']} | {row['ours']} | {row['ratio']} | {row['target']} | {met} |")

    figures = lifecycle_figures(results)
    lines += [
        "",
        "## Lifecycle workload: create N, orchestrate until all invoked, every worker reports completed, scavenge",
        "",
        "Rates are N / the phase's time; lifecycle = N / the sum of the phases (ours: the guard included). "
        "Per-task costs exclude the guard, shown apart. Other load: the share of the machine's CPU that other "
        "processes (other sessions on this machine) used meanwhile: a run with a high share is slower than it "
        "should be.",
        "",
        "| stack | N | invoke delay | create tasks/s | dispatch inv./s | reports/s | archive tasks/s | lifecycle "
        "tasks/s [without guard] | requests/task | guard req./task | WCU/task AWS [Local] | RCU/task | other load | "
        "end state |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for (stack, n, delay), f in sorted(figures.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
        state = "OK" if not f["failed"] else f"**{f['failed']} of {f['runs']} failed**"
        if "create_rate" not in f:
            lines.append(f"| {stack} | {n:,} | {delay} ms | | | | | | | | | | | {state} |")
            continue
        lines.append(
            f"| {stack} | {n:,} | {delay} ms | {_fmt(f['create_rate'], 0)} | {_fmt(f['dispatch_rate'], 0)} | "
            f"{_fmt(f['report_rate'], 0)} | {f['archive_cell']} | "
            f"{_fmt(f['throughput'])} "
            f"[{_fmt(f['throughput_without_guard'])}] | "
            f"{_fmt(f['requests_per_task'], 3)} | {_fmt(f['guard_requests_per_task'], 3)} | "
            f"{_fmt(f['wcu_aws_per_task'], 2)} [{_fmt(f['wcu_per_task'], 2)}] | {_fmt(f['rcu_per_task'], 2)} | "
            f"{_pct(f.get('others_cpu_share'))} | {state} |"
        )

    lines += [
        "",
        "### Where the requests go (one run of each stack, N = largest, highest delay)",
        "",
        f"CPU is per task, in ms, of the stack's process / DynamoDB Local / the Lambda endpoint / everything else on "
        f"the machine (other sessions, the harness); {info['cores']} cores: a phase whose CPU adds up to about "
        f"{info['cores']}x its time is bound by this machine.",
        "",
        "| stack | phase | seconds | requests/task | by operation (per task) | WCU/task AWS [Local] | RCU/task | CPU "
        "ms/task | errors |",
        "| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | --- |",
    ]
    if results["lifecycle"]:
        n_max = max(r["n"] for r in results["lifecycle"])
        d_max = max(r["delay_ms"] for r in results["lifecycle"])
        for stack in ("sosw", "ours"):
            run = next(
                (r for r in results["lifecycle"] if (r["stack"], r["n"], r["delay_ms"]) == (stack, n_max, d_max)), None
            )
            if not run:
                continue
            for name, phase in run["phases"].items():
                ops = ", ".join(
                    f"{op} {count / n_max:.3f}"
                    for op, count in sorted(phase["by_operation"].items(), key=lambda x: -x[1])
                )
                cpu = dict(phase.get("cpu_seconds", {}))
                if "machine" in cpu:
                    ours_cpu = sum(cpu.get(k, 0.0) for k in ("stack", "dynamodb_local", "lambda_endpoint"))
                    cpu["others"] = max(0.0, cpu["machine"] - ours_cpu)
                cpu_cell = " / ".join(
                    _fmt(cpu[k] * 1000 / n_max, 2) if k in cpu else "n/a"
                    for k in ("stack", "dynamodb_local", "lambda_endpoint", "others")
                )
                lines.append(
                    f"| {stack} | {name} | {phase['seconds']:.2f} | {phase['requests'] / n_max:.3f} | {ops} | "
                    f"{phase['wcu_aws'] / n_max:.2f} [{phase['wcu'] / n_max:.2f}] | {phase['rcu'] / n_max:.3f} | "
                    f"{cpu_cell} | {_errors(phase)} |"
                )

    lines += [
        "",
        "## Retry workload: workers never report; duration 1 s, cooldown 1 s, max_duration 1 s, 3 attempts",
        "",
        "An Orchestrator run and a Scavenger run per loop; a loop that changed nothing waits 1 s (real time, both).",
        "",
        "| stack | N | requests/task | by phase (per task) | WCU/task AWS [Local] | RCU/task | loops (idle) | seconds "
        "| end state |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for run in results["retry"]:
        f = retry_figures(run)
        state = "OK" if run["ok"] else f"**FAILED**: {run['error'] or run['problems']}"
        if not f:
            lines.append(f"| {run['stack']} | {run['n']} | | | | | | | {state} |")
            continue
        by_phase = ", ".join(f"{k} {v:.2f}" for k, v in f["phase_requests_per_task"].items())
        lines.append(
            f"| {run['stack']} | {run['n']} | {f['requests_per_task']:.2f} | {by_phase} | "
            f"{f['wcu_aws_per_task']:.2f} [{f['wcu_per_task']:.2f}] | {f['rcu_per_task']:.2f} | "
            f"{run['loops']} ({run['idle_loops']}) | {run['wall_seconds']:.1f} | {state} |"
        )

    lines += [
        "",
        "## Scaling: one Orchestrator run and one Scavenger run with the queue already long",
        "",
        "The labourer's limit is 10: each Orchestrator run invokes 10, their workers report (not counted), the "
        "Scavenger run archives them. The queue is bulk-loaded between levels (not counted).",
        "",
        "| stack | queued | Orchestrator requests | Orchestrator RCU | Orchestrator ms | Scavenger requests | "
        "Scavenger RCU | Scavenger ms | check |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for run in results["scaling"]:
        for step in run["steps"]:
            o, s = step["phases"]["orchestrate"], step["phases"]["scavenge"]
            check = "OK" if not step["problems"] else f"**{step['problems']}**"
            lines.append(
                f"| {run['stack']} | {step['queued']:,} | {o['requests']} | {o['rcu']:.1f} | "
                f"{o['seconds'] * 1000:.0f} | {s['requests']} | {s['rcu']:.1f} | {s['seconds'] * 1000:.0f} | {check} |"
            )
        if not run["ok"]:
            lines.append(f"| {run['stack']} | | | | | | | | **FAILED**: {run['error'] or run['problems']} |")

    lines += [
        "",
        "## How it was measured",
        "",
        "- One DynamoDB Local for the whole run; fresh tables (from `sosw.schema`, sosw's names and keys, a prefix per "
        "run) for every run; a warm-up run of each stack first (not recorded).",
        "- Every DynamoDB HTTP request is counted by operation with botocore event hooks on the session the stack's "
        "clients come from; each asks `ReturnConsumedCapacity=TOTAL` and the answers are summed. DynamoDB Local "
        'reports a transactional write at 4x a plain one (AWS bills 2x): "AWS rule" halves its TransactWriteItems '
        "figure, [Local] is its own. The AWS rule counts a transaction's index writes at 2x too (an upper bound).",
        "- Workers are invoked through a loopback Lambda endpoint in its own process (keep-alive, answering after the "
        "invoke delay). Each stack's own Worker class builds the reports from the event it received (not timed); "
        "they are applied 16 at a time, from 4 processes, through the stack's WorkerAssistant (ours: `start_task`, "
        "the guard, then "
        "`mark_task_as_completed` with the worker's copy of the task, which closes it at once; sosw: "
        "`mark_task_as_completed`, then the Scavenger archives). The same for both stacks.",
        "- The end state is read from the tables and the endpoint's record after every run: N closed (completed, or "
        "dead after 3 attempts), nothing open or waiting, every task invoked exactly once per attempt. A failed "
        "check marks the run failed.",
        "- sosw 0.7.51 (PyPI) runs in its own virtualenv with `sosw.app.get_config` returning an empty config and "
        "meta-table writes off (see bench/sosw_runner.py for the rest).",
        "",
    ]
    if results.get("drain"):
        lines += render_drain(results["drain"])
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- drain (issue 13)


def _spread(s: dict[str, Any] | None) -> str:
    if not s or not s.get("count"):
        return "n/a"
    return f"{s['median']:.2f} / {s['p95']:.2f} s"


def _within(s: dict[str, Any] | None, median: float | None, p95: float | None) -> bool:
    if not s or not s.get("count"):
        return False
    return (median is None or s["median"] <= median) and (p95 is None or s["p95"] <= p95)


def drain_summary(drain: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of the drain's targets table (issue 13), with whether each target is met (None: no target)."""
    rows: list[dict[str, Any]] = []
    latency = drain.get("latency") or {}
    drains = drain.get("drains") or []
    if latency:
        rows.append(
            {
                "figure": "create-to-invoke, a slot free (tasks created one by one, 0.5 s apart), median / p95",
                "measured": _spread(latency["create_to_invoke"]),
                "target": "≤ 1 s / ≤ 2 s",
                "met": _within(latency["create_to_invoke"], 1, 2),
            }
        )
    for d in drains:
        rows.append(
            {
                "figure": f"create-to-invoke, ({d['n']:,}, {d['d']:g} s, {d['cap']}) drain: its first {d['cap']} "
                "(slots free) [all, queueing included], median / p95",
                "measured": f"{_spread(d['create_to_invoke_first_fill'])} [{_spread(d['create_to_invoke'])}]",
                "target": "≤ 1 s / ≤ 2 s (first fill)",
                "met": _within(d["create_to_invoke_first_fill"], 1, 2),
            }
        )
    for d in drains:
        rows.append(
            {
                "figure": f"slot refilled after a completion, ({d['n']:,}, {d['d']:g} s, {d['cap']}) drain, "
                "median / p95",
                "measured": _spread(d["slot_refill"]),
                "target": "≤ 1 s / ≤ 2 s",
                "met": _within(d["slot_refill"], 1, 2),
            }
        )
    failures = drain.get("failures")
    if failures:
        rows.append(
            {
                "figure": f"slot refilled after a failure ({failures['n']:,} tasks failing after {failures['d']:g} s, "
                f"cap {failures['cap']}; from the failing worker's end), median / p95",
                "measured": _spread(failures["slot_refill"]),
                "target": "≤ 1 s / ≤ 2 s",
                "met": _within(failures["slot_refill"], 1, 2),
            }
        )
    if latency:
        for key, label in (
            (
                "retry_due_to_start",
                "retry-due-to-start, first attempt failed (due 2 s after; a slot free), median / p95",
            ),
            (
                "delayed_following_due_to_start",
                "due-to-start, delayed tasks (3-12 s; a slot free) while a run follows, median / p95",
            ),
            (
                "delayed_idle_due_to_start",
                f"due-to-start, delayed tasks (5 s) while no run follows (schedule every "
                f"{latency['schedule_seconds']:g} s here, 60 s deployed), median / p95",
            ),
        ):
            rows.append(
                {
                    "figure": label,
                    "measured": _spread(latency[key]),
                    "target": "≤ 2 s",
                    "met": _within(latency[key], None, 2),
                }
            )
    for d in drains:
        target = "≤ 30 s" if (d["n"], d["d"], d["cap"]) == (200, 1.0, 10) else ""
        seconds = d["drain_seconds"]
        rows.append(
            {
                "figure": f"drain time, ({d['n']:,}, {d['d']:g} s, {d['cap']}): measured (x ideal) [one fill a minute, "
                "computed]",
                "measured": f"{_fmt(seconds)} s ({_fmt(seconds / d['ideal_seconds'] if seconds else None)}x ideal "
                f"{_fmt(d['ideal_seconds'])} s) [{_fmt(d['one_fill_per_minute_seconds'], 0)} s]",
                "target": target or "(none)",
                "met": (seconds is not None and seconds <= 30) if target else None,
            }
        )
    one_pass = drain.get("one_pass")
    if one_pass and drains:
        same = (one_pass["n"], one_pass["d"], one_pass["cap"])
        follow = next(d for d in drains if (d["n"], d["d"], d["cap"]) == same)
        growth = follow["requests_per_task"] - one_pass["requests_per_task"]
        rows.append(
            {
                "figure": f"DynamoDB requests per task, lifecycle, ({one_pass['n']:,}, {one_pass['d']:g} s, "
                f"{one_pass['cap']}): following runs vs one-pass runs (same workload, measured)",
                "measured": f"{follow['requests_per_task']:.2f} vs {one_pass['requests_per_task']:.2f} ({growth:+.2f})",
                "target": "≤ +0.3",
                "met": growth <= 0.3,
            }
        )
        for d in drains:
            if d is not follow:
                rows.append(
                    {
                        "figure": f"DynamoDB requests per task, lifecycle, ({d['n']:,}, {d['d']:g} s, {d['cap']}), "
                        "following runs",
                        "measured": f"{d['requests_per_task']:.2f}",
                        "target": "(none)",
                        "met": None,
                    }
                )
    idle = drain.get("idle")
    if idle:
        rows += [
            {
                "figure": f"idle: DynamoDB requests between two scheduled runs ({idle['runs']} runs, "
                f"{idle['labourers']} labourers)",
                "measured": str(idle["requests_between_runs"]),
                "target": "0",
                "met": idle["requests_between_runs"] == 0,
            },
            {
                "figure": f"idle: DynamoDB requests per hour, the schedule's runs ({idle['labourers']} labourers)",
                "measured": f"{idle['requests_per_hour']:,.0f} (Orchestrator "
                f"{idle['per_run']['orchestrator']['requests']:.0f} + Scavenger "
                f"{idle['per_run']['scavenger']['requests']:.0f} a run, 60 runs)",
                "target": "(none)",
                "met": None,
            },
            {
                "figure": f"idle: Orchestrator Lambda seconds per hour ({idle['labourers']} labourers)",
                "measured": f"{idle['orchestrator_seconds_per_hour']:.0f} s "
                f"({idle['per_run']['orchestrator']['seconds'] * 1000:.0f} ms a run, 60 runs)",
                "target": "(none)",
                "met": None,
            },
        ]
    burst = drain.get("burst")
    if burst:
        rows.append(
            {
                "figure": f"Orchestrator invocations started by {burst['n']:,} completions of tasks that ran 11 s, "
                f"queued at once ({burst['assistant_processes']} WorkerAssistant processes)",
                "measured": f"{burst['orchestrator_invocations']} "
                f"({burst['activity']['orchestrator']['seconds']:.1f} s of Orchestrator time; reports applied over "
                f"{_fmt(burst['completions_seconds'])} s)",
                "target": "(count)",
                "met": None,
            }
        )
    return rows


def render_drain(drain: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## Drain: continuous dispatch at real speed (issue 13)",
        "",
    ]
    if drain.get("error"):
        return [*lines, f"**FAILED**: {drain['error']}", ""]
    lines += [
        f"`{drain['command']}` on {drain['date']}: the whole local stack (the real handlers of `lambdas/` behind "
        "the local Lambda endpoint, the tasks table's stream polled as Lambda's event source mapping, DynamoDB Local "
        f"behind a counting proxy), real time, the schedules every {drain['schedule_seconds']:g} s; "
        f"scale {drain['scale']}; "
        f"{drain['wall_seconds'] / 60:.1f} min (the stack's start {drain['stack_start_seconds']:.0f} s). Load average "
        f"(1 min) {drain['load_start']} at the start, {drain['load_end']} at the end, on {drain['cores']} cores: other "
        "sessions' work ran meanwhile.",
        "",
        "| figure | measured | target | met |",
        "| --- | --- | --- | --- |",
    ]
    for row in drain.get("summary") or drain_summary(drain):
        met = "" if row["met"] is None else ("yes" if row["met"] else "**no**")
        lines.append(f"| {row['figure']} | {row['measured']} | {row['target']} | {met} |")
    if drain.get("problems"):
        lines += ["", f"**Problems**: {'; '.join(drain['problems'])}"]
    lines += [
        "",
        "### Drains: N tasks of d seconds, cap C",
        "",
        "Drain: from the first create to the last completion. One fill a minute: sosw's model, computed: "
        "(ceil(N / C) - 1) x 60 s + d, the first fill right at a scheduled run. Slot refill: how long a freed slot "
        "stayed empty (the (C + k)-th invocation against the k-th slot freed). Requests: every DynamoDB request from "
        "the first create until the stack was quiet, per task (the producer's creates, the Orchestrator's runs, the "
        "WorkerAssistant's start guard and completions, any scheduled or woken run in between; the stream's reads "
        "apart). Machine CPU: the share of both cores in use during the drain, by everything on the machine.",
        "",
        "| run | drained | ideal | first invoke | create-to-invoke all (median / p95) | slot refill (median / p95) | "
        "requests/task (by caller) | Orchestrator: woken, scheduled, relays; seconds | extra attempts | peak running "
        "| machine CPU | load |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: | ---: | --- |",
    ]
    rows = [(f"following, ({d['n']:,}, {d['d']:g} s, {d['cap']})", d) for d in drain.get("drains") or []]
    if drain.get("one_pass"):
        op = drain["one_pass"]
        rows.append((f"one-pass runs, ({op['n']:,}, {op['d']:g} s, {op['cap']}), {op['passes']} runs", op))
    for label, d in rows:
        activity = d["activity"]
        callers = ", ".join(
            f"{k} {v / d['n']:.2f}" for k, v in sorted(activity["requests"]["by_caller"].items(), key=lambda kv: -kv[1])
        )
        orchestrator = activity["orchestrator"]
        lines.append(
            f"| {label} | {_fmt(d['drain_seconds'])} s | {_fmt(d['ideal_seconds'])} s | "
            f"{_fmt(d['first_invoke_seconds'], 2)} s | {_spread(d['create_to_invoke'])} | "
            f"{_spread(d['slot_refill'])} | "
            f"{d['requests_per_task']:.2f} ({callers}) "
            f"| {orchestrator['woken']}, {orchestrator['scheduled']}, {orchestrator['stream_relays']}; "
            f"{orchestrator['seconds']:.1f} s | {d['extra_attempts']} | {d['peak_running']} | "
            f"{_pct(activity.get('machine_cpu_share'))} | {activity['load'][0]} → {activity['load'][1]} |"
        )
    latency = drain.get("latency")
    if latency:
        activity = latency["activity"]
        lines += [
            "",
            "### Latency phase",
            "",
            f"Schedule every {latency['schedule_seconds']:g} s (shortened so this phase needs one more run); the "
            "delayed tasks nothing follows were created "
            f"{latency['delayed_idle_created_after_tick']:.1f} s after a scheduled run, due "
            f"{latency['delayed_idle_due_after_tick']:.1f} s after it; scheduled runs at "
            f"{', '.join(f'{t:.0f}' for t in latency['ticks_after_start'])} s. Orchestrator in this phase: "
            f"{activity['orchestrator']['runs']} invocations ({activity['orchestrator']['woken']} woken, "
            f"{activity['orchestrator']['scheduled']} scheduled, {activity['orchestrator']['stream_relays']} relays of "
            f"the stream), {activity['orchestrator']['seconds']:.1f} s; load {activity['load'][0]} → "
            f"{activity['load'][1]}.",
            "",
            "| measure | n | median | p95 | max |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for key, label in (
            ("create_to_invoke", "create-to-invoke, one task at a time, slots free"),
            ("retry_due_to_start", "retry-due-to-start, first attempt failed"),
            ("delayed_following_due_to_start", "due-to-start, delayed tasks, a run following"),
            ("delayed_idle_due_to_start", "due-to-start, delayed tasks, no run following"),
        ):
            v = latency[key]
            lines.append(
                f"| {label} | {v['count']} | {_fmt(v['median'], 2)} s | {_fmt(v['p95'], 2)} s | {_fmt(v['max'], 2)} s |"
            )
    idle, burst = drain.get("idle"), drain.get("burst")
    if idle:
        lines += [
            "",
            f"Idle: {idle['runs']} scheduled runs of each, {idle['gap_seconds']:g} s apart (shortened; the hourly "
            f"figures scale a run to 60 a hour), {idle['labourers']} labourers, nothing queued or waiting: "
            f"{idle['requests_between_runs']} DynamoDB requests between runs; a run: Orchestrator "
            f"{idle['per_run']['orchestrator']['requests']:.0f} requests, "
            f"{idle['per_run']['orchestrator']['seconds'] * 1000:.0f} ms; Scavenger "
            f"{idle['per_run']['scavenger']['requests']:.0f} requests, "
            f"{idle['per_run']['scavenger']['seconds'] * 1000:.0f} ms. The stream's reads (Lambda's event source "
            f"mapping; not billed as requests) ran at {idle['stream_reads_per_hour']:,.0f} an hour.",
        ]
    if burst:
        lines += [
            "",
            f"Burst: {burst['n']:,} tasks invoked on a sink worker; once they had run "
            f"{burst['ran_seconds']['min']:.0f} s or more, their {burst['n']:,} completion reports (as the Worker base "
            f"class builds them) were queued at the WorkerAssistant within {burst['queued_seconds'] * 1000:.0f} ms; "
            f"its {burst['assistant_processes']} processes applied them over {_fmt(burst['completions_seconds'])} s "
            f"and started {burst['orchestrator_invocations']} Orchestrator invocations (a container wakes the "
            "Orchestrator at most once a second per labourer); "
            f"{burst['activity']['requests']['by_caller'].get('orchestrator', 0)} DynamoDB requests by those runs.",
        ]
    lines.append("")
    return lines


if __name__ == "__main__":  # re-render bench/results.md from bench/results.json (after changing this module)
    import json
    from pathlib import Path

    bench = Path(__file__).resolve().parent
    data = json.loads((bench / "results.json").read_text())
    data["summary"] = summarize(data)
    if data.get("drain") and not data["drain"].get("error"):
        data["drain"]["summary"] = drain_summary(data["drain"])
    (bench / "results.json").write_text(json.dumps(data, indent=1) + "\n")
    (bench / "results.md").write_text(render_markdown(data))
