"""The benchmark report as a table for people (the JSON is for machines)."""

from __future__ import annotations

from typing import Any


def _n(x: Any, digits: int = 0) -> str:
    if x is None:
        return "—"
    if isinstance(x, float) and digits:
        return f"{x:,.{digits}f}"
    if isinstance(x, int | float):
        return f"{round(x):,}"
    return str(x)


def _ms(d: Any, keys: tuple[str, ...] = ("p50", "p95", "p99")) -> str:
    if not isinstance(d, dict):
        return "—"
    return " / ".join(_n(d.get(k)) for k in keys)


def render(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        f"plantwatch bench ({r['mode']}) on {m['cpus']} CPUs ({m['cpu_model']}), "
        f"{m['memory_gib']} GiB; took {r['duration_s']:.0f} s",
        "",
    ]
    e = r.get("embedded") or {}
    lines.append(
        f"THROUGHPUT  {_n(e.get('machines'))} machines, {_n(e.get('sensors'))} sensors, "
        f"{_n(e.get('readings_generated'))} readings"
    )
    lines.append(f"  {'shape':<58}{'readings/s':>12}{'CPU s/M':>10}{'peak RSS MiB':>14}")

    def row(name: str, d: Any) -> None:
        d = d or {}
        lines.append(
            f"  {name:<58}{_n(d.get('readings_per_s')):>12}"
            f"{_n(d.get('cpu_s_per_million'), 2):>10}{_n(d.get('peak_rss_mb')):>14}"
        )

    row("embedded: simulator > SDK > bus > stream > chDB, alerts", r.get("embedded"))
    row("ceiling: chDB from Arrow, same rows, same views", r.get("ceiling"))
    ref = r.get("reference") or {}
    row(f"reference: seed style, first {_n(ref.get('received'))} readings", ref)
    row("Kafka: SDK > broker > worker > sink > chDB", r.get("kafka"))
    f = r.get("flink") or {}
    if f:
        lines.append(
            f"  the stream stage alone, one recorded input ({_n(f.get('readings'))} readings "
            "from Kafka):"
        )
        row("    embedded runner: in-process bus > pipeline > chDB", f.get("embedded"))
        row("    Kafka worker: Kafka > pipeline > Kafka (steady)", f.get("kafka_worker"))
        for run in f.get("flink") or []:
            row(
                f"    Flink MiniCluster, parallelism {run['parallelism']}: Kafka > Kafka "
                f"(with start: {_n(run.get('readings_per_s_wall'))}/s)",
                run,
            )
    for name in ("embedded", "ceiling"):
        trials = (r.get(name) or {}).get("trials") or []
        if len(trials) > 1:
            lines.append(f"  {name} runs (best counts): {' · '.join(_n(t) for t in trials)}")
    q = r["ratios"]
    lines.append(
        f"  pipeline/ceiling {_n(q['pipeline_over_ceiling'], 2)} · pipeline/reference "
        f"{_n(q['pipeline_over_reference'], 1)}x · Kafka/embedded {_n(q['kafka_over_embedded'], 2)}"
        f" · Flink/embedded {_n(q['flink_over_embedded'], 2)}"
    )
    k = r.get("kafka") or {}
    if k:
        lag = k.get("backlog_readings") or {}
        lines.append(
            f"  Kafka backlog (produced, not yet stored): max {_n(lag.get('max'))}, "
            f"mean {_n(lag.get('mean'))}, at the end {_n(lag.get('end'))} readings"
        )
    lines += ["", "LATENCY at an offered load (ms: p50 / p95 / p99)"]
    lines.append(
        f"  {'offered/s':>10}{'achieved/s':>12}{'reading > stored':>24}"
        f"{'reading > notification':>28}{'notes':>7}{'RSS MiB start > end':>22}"
    )
    for d in r.get("latency") or []:
        d = d or {}
        mem = d.get("memory") or {}
        nl = d.get("notification_latency_ms") or {}
        lines.append(
            f"  {_n(d.get('offered_readings_per_s')):>10}{_n(d.get('readings_per_s')):>12}"
            f"{_ms(d.get('latency_ms')):>24}{_ms(nl):>28}{_n(nl.get('n')):>7}"
            f"{_n(mem.get('rss_start_mb')) + ' > ' + _n(mem.get('rss_end_mb')):>22}"
        )
    sc = r.get("scaling") or {}
    lines += ["", "SCALING  same total rate, more sensors"]
    lines.append(
        f"  {'sensors':>8}{'Hz each':>9}{'readings/s':>12}{'CPU s/M':>10}{'peak RSS MiB':>14}"
    )
    for d in sc.get("sensors") or []:
        d = d or {}
        lines.append(
            f"  {_n(d.get('sensors')):>8}{_n(d.get('rate_hz'), 1):>9}"
            f"{_n(d.get('readings_per_s')):>12}{_n(d.get('cpu_s_per_million'), 2):>10}"
            f"{_n(d.get('peak_rss_mb')):>14}"
        )
    b = sc.get("batch") or {}
    if b:
        pts = " · ".join(f"{_n(p['batch_rows'])}: {_n(p['readings_per_s'])}" for p in b["points"])
        lines.append(f"  stream stage by batch rows (readings/s): {pts}")
        lines.append(
            f"  saturates (90 % of the best) at {_n(b.get('saturates_at_batch_rows'))} rows"
        )
    lines += ["", "GOALS"]
    for g in r["goals"]:
        met = {True: "met", False: "MISSED", None: "—"}[g["met"]]
        measured = g["measured"]
        shown = _n(measured, 2) if isinstance(measured, float) and measured < 100 else _n(measured)
        lines.append(f"  {g['goal']:<60}{g['target']:>14}{shown:>12}  {met}")
    if r.get("errors"):
        lines += ["", "ERRORS"] + [f"  {k}: {v.splitlines()[0]}" for k, v in r["errors"].items()]
    return "\n".join(lines)
