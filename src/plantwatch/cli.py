"""``plantwatch``: the command line. The only module that reads argv and the environment,
builds :class:`~plantwatch.core.settings.Settings` and wires stages together."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plantwatch.cliargs import positive, speed, stop_on_signals
from plantwatch.core.errors import ConfigError, PlantwatchError
from plantwatch.core.settings import Settings

if TYPE_CHECKING:
    from plantwatch.stream.producer import RunOptions

log = logging.getLogger("plantwatch")

FAULTS_HELP = """fault injection: 'default' (a few of each kind, scaled to --machines), 'none', or a
comma-separated list of KIND:COUNT (e.g. bearing_wear:3,stuck:1) and explicit placements
KIND@MACHINE[/SENSOR]:START+DURATION (seconds from the run start, simulated time). Kinds:
bearing_wear, overheating, pressure_leak, electrical (machine faults); stuck, dropout, glitch
(sensor faults)."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="plantwatch", description="Real-time monitoring and alerting for industrial machines."
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run", help="run the embedded plant: simulator → SDK → bus → stream → chDB → alerts"
    )
    run.add_argument(
        "--machines",
        type=positive(int),
        default=12,
        help="machines in the simulated plant (default 12)",
    )
    run.add_argument(
        "--rate",
        type=positive(float),
        default=1.0,
        metavar="HZ",
        help="readings per sensor per second (default 1)",
    )
    run.add_argument(
        "--duration",
        type=positive(float),
        default=None,
        metavar="SECONDS",
        help="stop after this many wall seconds (with --speed max: simulated seconds); "
        "default: until Ctrl-C",
    )
    run.add_argument(
        "--speed",
        type=speed,
        default=1.0,
        metavar="X",
        help="simulated seconds per wall second, or 'max' (default 1)",
    )
    run.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="data folder (default ./data or PLANTWATCH_DATA_DIR)",
    )
    run.add_argument("--seed", type=int, default=1, help="simulator seed (default 1)")
    run.add_argument("--faults", default="default", metavar="SPEC", help=FAULTS_HELP)
    run.add_argument(
        "--bus",
        default=None,
        metavar="URL",
        help="kafka://host:port[,host:port] to run the plant through Apache Kafka "
        "(default: the in-process bus)",
    )
    run.add_argument(
        "--no-live", action="store_true", help="plain log lines instead of the live view"
    )
    run.add_argument(
        "--summary-json",
        type=Path,
        default=None,
        metavar="PATH",
        help="write the run summary as JSON",
    )

    run.add_argument(
        "--rules",
        type=Path,
        default=None,
        metavar="FILE",
        help="alert rules and notifications (YAML, docs/alerts.md); default: the shipped rules "
        "or PLANTWATCH_RULES_FILE",
    )

    _role_parsers(sub)
    _alarm_parsers(sub)
    _export_parsers(sub)
    from plantwatch.batch import replay_cli

    replay_cli.add_parser(sub)
    from plantwatch.batch import archive_cli

    archive_cli.add_parser(sub)
    from plantwatch.stream.flink import cli as flink_cli

    flink_cli.add_parser(sub)
    from plantwatch.evaluate import cli as evaluate_cli
    from plantwatch.models import cli as models_cli

    models_cli.add_parsers(sub)
    evaluate_cli.add_parser(sub)

    q = sub.add_parser("query", help="run a read-only SQL query over the data folder")
    q.add_argument(
        "sql",
        help="ClickHouse SQL; tables live in database 'plantwatch' (e.g. plantwatch.readings)",
    )
    q.add_argument("--format", choices=("table", "csv", "json"), default="table")
    q.add_argument("--data-dir", type=Path, default=None, metavar="DIR")
    return p


def _instance_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--instance",
        default=None,
        metavar="NAME",
        help="this process's name among several of its role on one host: its log file is "
        "<data_dir>/logs/plantwatch-<role>-NAME.ndjson (default: the first takes the plain name, "
        "the others their pid)",
    )


def _role_parsers(sub: Any) -> None:
    """The distributed shape: devices, workers and the sink as separate processes over Kafka."""
    bus_help = "kafka://host:port[,host:port] of the Kafka cluster"
    sim = sub.add_parser("simulate", help="only the simulated devices, publishing to Kafka")
    sim.add_argument("--bus", required=True, metavar="URL", help=bus_help)
    sim.add_argument("--machines", type=positive(int), default=12)
    sim.add_argument("--rate", type=positive(float), default=1.0, metavar="HZ")
    sim.add_argument("--duration", type=positive(float), default=None, metavar="SECONDS")
    sim.add_argument("--speed", type=speed, default=1.0, metavar="X")
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--faults", default="default", metavar="SPEC", help=FAULTS_HELP)
    sim.add_argument("--data-dir", type=Path, default=None, metavar="DIR", help="the SDK spool")
    proc = sub.add_parser("process", help="a stream worker in a Kafka consumer group")
    proc.add_argument("--bus", required=True, metavar="URL", help=bus_help)
    proc.add_argument("--group", default="plantwatch-stream", help="consumer group")
    proc.add_argument("--rules", type=Path, default=None, metavar="FILE", help="alert rules")
    for role in (sim, proc):
        _instance_option(role)
    snk = sub.add_parser("sink", help="the stream's outputs from Kafka into ClickHouse")
    snk.add_argument("--bus", required=True, metavar="URL", help=bus_help)
    snk.add_argument(
        "--store",
        default=None,
        metavar="URL",
        help="chdb:///abs/path or http(s)://host:8123 (default: the data folder's chDB)",
    )
    snk.add_argument("--data-dir", type=Path, default=None, metavar="DIR")
    snk.add_argument("--group", default="plantwatch-sink", help="consumer group")
    snk.add_argument(
        "--rules", type=Path, default=None, metavar="FILE", help="alert rules and notifications"
    )
    _instance_option(snk)
    svc = sub.add_parser("services", help="start and stop local services for development and tests")
    svc_sub = svc.add_subparsers(dest="service", required=True)
    kafka = svc_sub.add_parser(
        "kafka", help="Apache Kafka (KRaft) on 127.0.0.1, jars from Maven Central"
    )
    kafka.add_argument("action", choices=("start", "stop", "status"))
    kafka.add_argument("--brokers", type=int, choices=(1, 3), default=1)
    kafka.add_argument("--dir", type=Path, default=Path(".cache/kafka-run"), metavar="DIR")
    kafka.add_argument("--port", type=int, default=9092, metavar="P")
    from plantwatch.services import opensearch

    opensearch.add_parser(svc_sub)


def _alarm_parsers(sub: Any) -> None:
    """Alarms people act on, silences, and rules files."""
    dd = {"type": Path, "default": None, "metavar": "DIR", "help": "data folder (default ./data)"}
    alarms = sub.add_parser("alarms", help="list, acknowledge, assign and comment alarms")
    a_sub = alarms.add_subparsers(dest="action", required=True)
    ls = a_sub.add_parser("list", help="alarms, most severe first")
    ls.add_argument("--active", action="store_true", help="only alarms that are still active")
    ls.add_argument("--machine", default=None, metavar="M", help="only this machine's alarms")
    ls.add_argument("--json", action="store_true", help="JSON instead of a table")
    ack = a_sub.add_parser("ack", help="acknowledge an alarm (stops its escalation and repeats)")
    assign = a_sub.add_parser("assign", help="assign an alarm to someone")
    comment = a_sub.add_parser("comment", help="add a comment to an alarm")
    for p in (ack, assign, comment):
        p.add_argument("alarm_id", metavar="ID", help="the alarm's id (A + 10 hex; see list)")
        p.add_argument("--user", required=True, metavar="U", help="who (assign: the assignee)")
    ack.add_argument("--comment", default="", metavar="C")
    assign.add_argument("--by", default="", metavar="B", help="who assigns (default: --user)")
    comment.add_argument("--text", required=True, metavar="C")
    for p in (ls, ack, assign, comment):
        p.add_argument("--data-dir", **dd)
        p.add_argument("--rules", type=Path, default=None, metavar="FILE")

    sil = sub.add_parser("silences", help="mute notifications for matching alerts for a while")
    s_sub = sil.add_subparsers(dest="action", required=True)
    add = s_sub.add_parser("add", help="add a silence")
    add.add_argument(
        "--matcher",
        action="append",
        required=True,
        metavar="M",
        help="label=value, label!=value, label=~regex or label!~regex (repeat: all must match); "
        "labels: alertname, severity, machine_id, sensor_id, kind, machine_type, line, …",
    )
    span = add.add_mutually_exclusive_group(required=True)
    span.add_argument("--duration", metavar="D", help="how long from --starts: 30m, 2h, 1d")
    span.add_argument("--until", metavar="TIME", help="ISO 8601 end (2026-12-05T06:00:00Z)")
    add.add_argument("--starts", default=None, metavar="TIME", help="ISO 8601 start (default now)")
    add.add_argument("--user", required=True, metavar="U")
    add.add_argument("--comment", default="", metavar="C")
    sls = s_sub.add_parser("list", help="silences, with their state")
    sls.add_argument("--json", action="store_true")
    exp = s_sub.add_parser("expire", help="end a silence now")
    exp.add_argument("silence_id", metavar="ID")
    exp.add_argument("--user", default="", metavar="U")
    for p in (add, sls, exp):
        p.add_argument("--data-dir", **dd)
        p.add_argument("--rules", type=Path, default=None, metavar="FILE")

    rules = sub.add_parser("rules", help="check a rules file, or print the shipped one")
    r_sub = rules.add_subparsers(dest="action", required=True)
    chk = r_sub.add_parser("check", help="validate a rules file (errors name line and field)")
    chk.add_argument("file", type=Path)
    r_sub.add_parser("defaults", help="print the shipped rules file")

    _grafana_parsers(sub)

    bench = sub.add_parser(
        "bench",
        help="measure every shape: throughput, ceiling, reference, latency, scaling, Kafka",
        description="Measure plantwatch on this machine in one run (docs/performance.md): the "
        "embedded shape as fast as it goes, chDB's ceiling and a seed-style reference on the "
        "same rows, latency at 10k and 100k readings/s offered, scaling with the sensor count "
        "and the batch size, and the Kafka shape through a real broker started for the run. "
        "Prints a table; --json writes every figure.",
    )
    bench.add_argument(
        "--quick", action="store_true", help="a smoke run in under two minutes (small inputs)"
    )
    bench.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the report")
    bench.add_argument(
        "--no-kafka", action="store_true", help="skip the Kafka shape (no Java on this machine)"
    )


def _grafana_parsers(sub: Any) -> None:
    g = sub.add_parser("grafana", help="Grafana provisioning: datasource, dashboards, alert rules")
    g_sub = g.add_subparsers(dest="action", required=True)
    exp = g_sub.add_parser(
        "export",
        help="write Grafana provisioning files (datasource, dashboards, alert rules)",
        description="Write the ClickHouse datasource, the four plantwatch dashboards and alert "
        "rules, contact points and notification policies compiled from the rules file, as "
        "Grafana provisioning files (README: Grafana). Connection and database come from the "
        "settings (PLANTWATCH_STORE_URL, PLANTWATCH_DATABASE, PLANTWATCH_CLICKHOUSE_USER); the "
        "password stays in Grafana's environment ($PLANTWATCH_CLICKHOUSE_PASSWORD).",
    )
    exp.add_argument("--out", type=Path, required=True, metavar="DIR")
    exp.add_argument("--rules", type=Path, default=None, help="rules file (default: shipped)")
    exp.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if DIR differs from a fresh export (for CI)",
    )
    chk = g_sub.add_parser(
        "check",
        help="run every dashboard query and replay the alert rules against a data folder",
        description="Run every panel, variable and annotation query against the data folder's "
        "store (macros expanded as the ClickHouse plugin does) over the stored time range, and "
        "replay the Grafana alert rules over the stored windows, comparing the alert instances "
        "they fire with the stream's. Exit 1 on a failed query or a difference.",
    )
    chk.add_argument("--data-dir", type=Path, default=None)
    chk.add_argument("--rules", type=Path, default=None, help="rules file (default: shipped)")


def _export_parsers(sub: Any) -> None:
    e = sub.add_parser(
        "export",
        help="logs and stored history to CSV/Parquet partitions in a folder or bucket",
        description="Convert logs (logs://GLOB, elasticsearch://HOST:PORT[/INDEX]) or a stored "
        "dataset (chdb://DIR, http(s)://clickhouse:8123) into files partitioned by UTC day and "
        "machine under --to (a folder, gs://bucket/prefix or s3://bucket/prefix), each partition "
        "with a manifest (rows, time range, checksums). Runs are incremental: a checkpoint in "
        "the archive says where the last one stopped, so repeated runs add what is new, with no "
        "gap and no duplicate, even after a crash or a log rotation. Malformed log lines go to "
        "_rejects/ with the reason. README: The batch side.",
    )
    e.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="URL",
        help="logs://GLOB | chdb://DIR | http(s)://HOST:PORT (ClickHouse) | "
        "elasticsearch://HOST:PORT[/INDEX]",
    )
    e.add_argument(
        "--to",
        default=None,
        metavar="URL",
        help="a folder, gs://bucket/prefix or s3://bucket/prefix (default: "
        "PLANTWATCH_ARCHIVE_URL or <data_dir>/archive)",
    )
    e.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    e.add_argument(
        "--dataset",
        default=None,
        help="what to export from a store: readings (default), features, anomalies, "
        "alert_events, alarm_events, dead_letters; logs for logs:// and elasticsearch://",
    )
    e.add_argument("--since", default=None, metavar="T", help="ISO 8601 or a span back (24h, 7d)")
    e.add_argument("--until", default=None, metavar="T", help="exclusive end, same forms")
    ck = e.add_mutually_exclusive_group()
    ck.add_argument(
        "--checkpoint",
        default=None,
        metavar="NAME",
        help="checkpoint name (default: one per source, dataset and format)",
    )
    ck.add_argument(
        "--no-checkpoint", action="store_true", help="a one-off export: read all, record nothing"
    )
    e.add_argument(
        "--max-rows", type=positive(int), default=500_000, help="rows per chunk (default 500000)"
    )
    e.add_argument(
        "--settle-s",
        type=float,
        default=None,
        metavar="S",
        help="rows stored or indexed in the last S seconds wait for the next run (default: 60 "
        "for a ClickHouse server, 30 for Elasticsearch, 0 for chDB and log files)",
    )
    e.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the report")


def cmd_export(args: argparse.Namespace) -> int:
    from plantwatch.batch.archive import Archive
    from plantwatch.batch.export import Exporter, default_checkpoint
    from plantwatch.batch.layout import parse_instant
    from plantwatch.batch.sources.base import Source

    settings = _settings(args)
    url: str = args.source
    source: Source
    closer = None
    if url.startswith("logs://"):
        from plantwatch.batch.sources.logs import LogFilesSource

        _dataset_must_be(args.dataset, "logs", url)
        source = LogFilesSource.from_url(url)
    elif url.startswith(("elasticsearch://", "elasticsearchs://")):
        from plantwatch.batch.sources.elastic import ElasticSource, credentials_from_env

        _dataset_must_be(args.dataset, "logs", url)
        user, password = credentials_from_env(os.environ)
        settle = {} if args.settle_s is None else {"settle_s": args.settle_s}
        source = ElasticSource.from_url(url, user=user, password=password, **settle)
    elif url.startswith(("chdb://", "http://", "https://")):
        from plantwatch.batch.sources.store import StoreSource

        store_source = StoreSource(
            url,
            args.dataset or "readings",
            database=settings.database,
            user=settings.clickhouse_user,
            password=settings.clickhouse_password.get_secret_value(),
            settle_s=args.settle_s,
        )
        source, closer = store_source, store_source.close
    else:
        raise ConfigError(
            f"--from {url!r}: use logs://GLOB, chdb://DIR, http(s)://HOST:PORT or "
            "elasticsearch://HOST:PORT[/INDEX]"
        )
    since = parse_instant(args.since) if args.since else None
    until = parse_instant(args.until) if args.until else None
    archive = Archive.open(args.to or settings.resolved_archive_url())
    checkpoint = (
        None if args.no_checkpoint else (args.checkpoint or default_checkpoint(source, args.format))
    )
    try:
        report = Exporter(
            source, archive, fmt=args.format, checkpoint=checkpoint, max_rows=args.max_rows
        ).run(since=since, until=until)
    finally:
        if closer is not None:
            closer()
    r = report.as_dict()
    if args.json:
        args.json.write_text(json.dumps(r, indent=2) + "\n", encoding="utf-8")
    print(
        f"exported {report.rows} {report.dataset} rows from {report.source} to {report.archive}: "
        f"{report.files} files in {len(report.partitions)} partitions, {report.bytes} bytes, "
        f"{report.rejects} rejects, {report.seconds:.2f} s ({report.rows_per_s:,.0f} rows/s)"
        + (f"; checkpoint {checkpoint}" if checkpoint else "")
        + (
            f"; removed {report.recovered_files} files of an interrupted run first"
            if report.recovered_files
            else ""
        )
    )
    return 0


def _dataset_must_be(given: str | None, expected: str, url: str) -> None:
    if given is not None and given != expected:
        raise ConfigError(f"--from {url} holds {expected}, not --dataset {given}")


def cmd_grafana(args: argparse.Namespace) -> int:
    from plantwatch.grafana.export import Connection, build, differences, rules_for_grafana, write

    settings = _settings(args)
    text = settings.rules_file.read_text("utf-8") if settings.rules_file else None
    rules = rules_for_grafana(text, str(settings.rules_file or "<shipped rules>"))
    conn = Connection.from_url(
        settings.store_url, database=settings.database, username=settings.clickhouse_user
    )
    st = settings.stream
    export = build(
        rules,
        conn,
        window_s=st.window_s,
        out_of_orderness_s=st.out_of_orderness_s,
        no_data_after_s=st.no_data_after_s,
    )
    for sk in export.skipped:
        print(f"not for Grafana: {sk.rule}: {sk.reason}", file=sys.stderr)
    if args.action == "export":
        if args.check:
            diff = list(differences(export, args.out))
            for d in diff:
                print(f"{args.out}/{d}", file=sys.stderr)
            if diff:
                print(f"regenerate: plantwatch grafana export --out {args.out}", file=sys.stderr)
                return 1
            print(f"{args.out}: up to date ({len(export.files)} files)")
            return 0
        for path in write(export, args.out):
            print(path)
        return 0
    from plantwatch.grafana.check import compare_rules, run_queries
    from plantwatch.store import migrate, open_configured

    store = open_configured(settings)
    try:
        migrate(store)  # the dashboards read the current schema (as every command, applied once)
        db = store.database
        lo, hi = store.query_rows(
            f"SELECT toUnixTimestamp64Milli(min(ts)), toUnixTimestamp64Milli(max(ts))"
            f" FROM {db}.readings"
        )[0]
        bad = 0
        for r in run_queries(store, export.queries, int(lo), int(hi)):
            bad += not r.ok
            status = "ok" if r.ok else (r.error or f"columns {r.columns} != {r.query.columns}")
            print(f"{r.query.dashboard} / {r.query.panel}: {r.rows} rows, {status}")
        cmp = compare_rules(store, export)
        print(
            f"alert rules: Grafana fired {len(cmp.grafana)} instances, the stream "
            f"{len(cmp.stream)}; {cmp.replay.evaluations} evaluations, {cmp.replay.queries} queries"
        )
        for x in sorted(cmp.grafana - cmp.stream):
            print(f"  only Grafana: {x}")
        for x in sorted(cmp.stream - cmp.grafana):
            print(f"  only the stream: {x}")
        return 1 if bad or not cmp.same else 0
    finally:
        store.close()


def cmd_alarms(args: argparse.Namespace) -> int:
    from plantwatch.alert import control
    from plantwatch.console.alarms import alarms_table, show

    settings = _settings(args)
    if args.action == "list":
        found = control.listing(settings, active_only=args.active)
        alarms = [a for a in found["alarms"] if args.machine in (None, a["machine_id"])]
        if args.json:
            print(json.dumps(alarms, indent=2))
        else:
            show(alarms_table(alarms))
        return 0
    cmd: dict[str, Any] = {"op": args.action, "alarm_id": args.alarm_id, "user": args.user}
    if args.action == "ack":
        cmd["comment"] = args.comment
    elif args.action == "assign":
        cmd.update(assignee=args.user, user=args.by or args.user)
    else:
        cmd["comment"] = args.text
    return _answer(control.execute(settings, cmd))


def cmd_silences(args: argparse.Namespace) -> int:
    from plantwatch.alert import control
    from plantwatch.console.alarms import show, silences_table

    settings = _settings(args)
    if args.action == "list":
        found = control.listing(settings)
        if args.json:
            print(json.dumps(found["silences"], indent=2))
        else:
            show(silences_table(found["silences"]))
        return 0
    if args.action == "expire":
        return _answer(
            control.execute(
                settings, {"op": "silence_expire", "silence_id": args.silence_id, "user": args.user}
            )
        )
    cmd: dict[str, Any] = {
        "op": "silence_add",
        "matchers": args.matcher,
        "user": args.user,
        "comment": args.comment,
    }
    if args.starts:
        cmd["starts_ms"] = control.parse_time_ms(args.starts)
    if args.until:
        cmd["ends_ms"] = control.parse_time_ms(args.until)
    else:
        cmd["duration_ms"] = round(control.duration_s(args.duration) * 1000)
    return _answer(control.execute(settings, cmd))


def _answer(answer: dict[str, Any]) -> int:
    if not answer.get("ok"):
        print(f"plantwatch: error: {answer.get('error')}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in answer.items() if k != "ok"}, indent=2))
    return 0


def cmd_rules(args: argparse.Namespace) -> int:
    from plantwatch.alert.rulefile import default_rules_path, load_rules

    if args.action == "defaults":
        print(default_rules_path().read_text("utf-8"), end="")
        return 0
    from plantwatch.alert.notify.receivers import build_receiver

    rs = load_rules(args.file)  # a RulesFileError lists every problem with its line
    for r in rs.notifications.receivers:
        build_receiver(r.name, r.kind, r.options)  # unknown or mistyped options
    receivers = ", ".join(r.name for r in rs.notifications.receivers)
    print(f"{args.file}: {len(rs.rules)} rules, receivers: {receivers}; ok")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from plantwatch.stream.distributed import simulate

    options = _run_options(args, bus_url=args.bus)
    with stop_on_signals() as stop:
        r = simulate(options, _settings(args), stop, progress=lambda p: log.info("%s", p))
    print(
        json.dumps(
            {
                "generated": r.generated,
                "replayed": r.replayed,
                "drained": r.drained,
                "sim_seconds": r.sim_seconds,
                "wall_seconds": round(r.wall_seconds, 3),
                "produced_per_s": round(r.generated / max(r.wall_seconds, 1e-9)),
            }
        )
    )
    return 0 if r.drained else 3


def cmd_process(args: argparse.Namespace) -> int:
    from plantwatch.stream.distributed import process

    with stop_on_signals() as stop:
        m = process(_settings(args), args.bus, stop, group=args.group)
    c = m.counts
    busy = (m.last_stored or 0) - (m.first_stored or 0)
    print(
        json.dumps(
            {
                "received": c.received,
                "duplicates": c.duplicates,
                "dead_letters": dict(c.dead),
                "late": c.late,
                "anomalies": m.anomalies,
                "alerts_fired": m.alerts_fired,
                "processed_per_s": round(c.received / busy) if busy > 0 else None,
            }
        )
    )
    return 0


def cmd_sink(args: argparse.Namespace) -> int:
    from plantwatch.stream.distributed import sink

    settings = _settings(args)
    if args.store:
        settings = settings.model_copy(update={"store_url": args.store})
    with stop_on_signals() as stop:
        m = sink(settings, args.bus, stop, group=args.group)
    print(
        json.dumps(
            {
                "stored": m.counts.stored,
                "duplicates_dropped": m.counts.duplicates,
                "sunk_per_s": round(m.throughput()),
            }
        )
    )
    return 0


def cmd_services(args: argparse.Namespace) -> int:
    from plantwatch.services import kafka, opensearch

    settings = Settings()
    if args.service == "opensearch":
        return opensearch.cmd(args, cache_dir=settings.cache_dir)
    if args.action == "start":
        st = kafka.start(
            dir=args.dir, cache_dir=settings.cache_dir, brokers=args.brokers, port=args.port
        )
        print(st.describe())
        print(f"\nbootstrap: {st.bootstrap}   (plantwatch run --bus kafka://{st.bootstrap})")
        return 0
    if args.action == "stop":
        stopped = kafka.stop(dir=args.dir)
        print(f"stopped nodes {list(stopped)}" if stopped else f"nothing was running in {args.dir}")
        return 0
    st = kafka.status(dir=args.dir)
    print(st.describe())
    return 0 if st.healthy else 1


def _run_options(args: argparse.Namespace, **extra: Any) -> RunOptions:
    """The simulated plant's options from the arguments ``run`` and ``simulate`` share."""
    from plantwatch.stream.producer import RunOptions

    return RunOptions(
        machines=args.machines,
        rate_hz=args.rate,
        duration_s=args.duration,
        speed=args.speed,
        seed=args.seed,
        faults=args.faults,
        **extra,
    )


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings()
    if getattr(args, "data_dir", None) is not None:
        settings = settings.model_copy(update={"data_dir": args.data_dir})
    if getattr(args, "rules", None) is not None:
        settings = settings.model_copy(update={"rules_file": args.rules})
    return settings


def cmd_run(args: argparse.Namespace) -> int:
    from plantwatch.console.live import run_live, run_log
    from plantwatch.stream.embedded import EmbeddedPlant

    settings = _settings(args)
    options = _run_options(args, bus_url=args.bus, log_alerts=args.no_live)
    plant = EmbeddedPlant(options, settings)
    try:
        r = plant.runner_restored
        if r is not None and r.sensors:
            log.info(
                "resuming from %s: %d sensors, stored data up to %s; "
                "%d readings to replay from the spool",
                settings.data_dir,
                r.sensors,
                r.max_event_ms,
                plant.replayed,
            )
        interrupted = {"n": 0}

        def on_sigint(signum: int, frame: Any) -> None:
            interrupted["n"] += 1
            if interrupted["n"] > 1:
                raise KeyboardInterrupt
            log.warning(
                "stopping: flushing the spool and the store "
                "(Ctrl-C again to abort; nothing is lost either way)"
            )
            plant.request_stop()

        previous = signal.signal(signal.SIGINT, on_sigint)
        signal.signal(signal.SIGTERM, on_sigint)
        plant.start_threads()
        try:
            if args.no_live:
                run_log(plant.snapshot, plant.wait)
            else:
                run_live(plant.snapshot, plant.wait)
            drained = plant.stop()
        finally:
            signal.signal(signal.SIGINT, previous)
        if plant.errors:
            raise plant.errors[0]
        summary = plant.summary()
        if args.summary_json:
            args.summary_json.parent.mkdir(parents=True, exist_ok=True)
            args.summary_json.write_text(json.dumps(summary, indent=2, default=str) + "\n")
        _print_summary(summary)
        return 0 if drained else 3
    finally:
        plant.close()


def _print_summary(s: dict[str, Any]) -> None:
    d = s["detection"]
    dead = sum(s["dead_letters"].values())
    ok = "ok" if s["accounting_ok"] else "MISMATCH"
    lat = s["latency_ms"]
    lines = [
        "",
        f"readings generated {s['readings_generated']:,} "
        f"(+{s['readings_replayed']:,} replayed from the spool) = stored {s['readings_stored']:,} "
        f"+ duplicates {s['duplicates_dropped']:,} + dead letters {dead:,}  [{ok}]",
    ]
    if s["dead_letters"]:
        lines.append("dead letters: " + ", ".join(f"{k} {v}" for k, v in s["dead_letters"].items()))
    lines.append(
        f"late {s['late']:,}  anomalies {s['anomalies']:,}  "
        f"alerts fired {s['alerts_fired']} resolved {s['alerts_resolved']}"
    )
    if d["machine_faults"] or d["sensor_fault_kinds"]:
        lines.append(
            f"machine faults detected {d['machine_faults_detected']}/{d['machine_faults']}; "
            f"sensor fault kinds detected {d['sensor_fault_kinds_detected']} "
            f"of {d['sensor_fault_kinds']}"
        )
    lines.append(
        f"false alerts {len(s['false_alerts'])} "
        f"({d['false_alerts_per_machine_hour']} per machine-hour)"
    )
    lines.append(
        f"throughput {s['throughput_readings_per_s']:,.0f} readings/s; latency "
        f"p50 {_ms(lat['p50'])}, p95 {_ms(lat['p95'])}, p99 {_ms(lat['p99'])}"
    )
    al = s["alarms"]
    nl = al["notification_latency_ms"]
    lines.append(
        f"alarms active {al['alarms_active']} (unacknowledged {al['alarms_unacknowledged']}); "
        f"notifications sent {al['notifications_sent']}, failed {al['notifications_failed']}, "
        f"dropped {al['notifications_dropped']}; alert → notification p50 {_ms(nl['p50'])}, "
        f"p99 {_ms(nl['p99'])}"
    )
    print("\n".join(lines))


def _ms(v: float | None) -> str:
    return "–" if v is None else f"{v:,.0f} ms"


def _json_value(v: Any) -> Any:
    if isinstance(v, datetime):  # ClickHouse times are UTC; the client hands them over naive
        return (v if v.tzinfo else v.replace(tzinfo=UTC)).isoformat().replace("+00:00", "Z")
    return str(v)


def cmd_bench(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from plantwatch.bench import Plan, render, run_bench

    plan = Plan.quick() if args.quick else Plan.full()
    if args.no_kafka:
        plan = replace(plan, kafka=False)
    report = run_bench(plan, settings=Settings())
    data = report.as_dict()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=2, default=str) + "\n")
    print(render(data))
    return 1 if report.errors else 0


def cmd_query(args: argparse.Namespace) -> int:
    from plantwatch.store import open_configured

    settings = _settings(args)
    folder = settings.data_dir / "clickhouse"
    if settings.store_url is None and not folder.exists():
        raise PlantwatchError(
            f"no data in {settings.data_dir}: "
            f"run `plantwatch run --data-dir {settings.data_dir}` first"
        )
    store = open_configured(settings)
    try:
        names, rows = store.query_named(args.sql, read_only=True)
    finally:
        store.close()
    if args.format == "json":
        print(json.dumps([dict(zip(names, r, strict=True)) for r in rows], default=_json_value))
    elif args.format == "csv":
        import csv

        w = csv.writer(sys.stdout)
        w.writerow(names)
        w.writerows([_json_value(v) if isinstance(v, datetime) else v for v in r] for r in rows)
    else:
        from rich.console import Console
        from rich.table import Table

        t = Table(*names)
        for r in rows:
            t.add_row(*(_json_value(v) if isinstance(v, datetime) else str(v) for v in r))
        Console().print(t)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from plantwatch.core.logs import setup as setup_logging

        # the console as before, plus ECS JSON lines in <data_dir>/logs (PLANTWATCH_LOG__*)
        setup_logging(
            _settings(args),
            f"plantwatch-{args.command}",
            verbose=args.verbose,
            instance=getattr(args, "instance", None),
        )
        if args.command == "run":
            return cmd_run(args)
        if args.command == "query":
            return cmd_query(args)
        if args.command == "simulate":
            return cmd_simulate(args)
        if args.command == "process":
            return cmd_process(args)
        if args.command == "sink":
            return cmd_sink(args)
        if args.command == "services":
            return cmd_services(args)
        if args.command == "alarms":
            return cmd_alarms(args)
        if args.command == "silences":
            return cmd_silences(args)
        if args.command == "rules":
            return cmd_rules(args)
        if args.command == "bench":
            return cmd_bench(args)
        if args.command == "grafana":
            return cmd_grafana(args)
        if args.command == "export":
            return cmd_export(args)
        if args.command == "archive":
            from plantwatch.batch import archive_cli

            return archive_cli.cmd(args, _settings(args))
        if args.command == "flink":
            from plantwatch.stream.flink import cli as flink_cli

            return flink_cli.cmd(args, _settings(args))
        if args.command == "train":
            from plantwatch.models import cli as models_cli

            return models_cli.cmd_train(args, _settings(args))
        if args.command == "models":
            from plantwatch.models import cli as models_cli

            return models_cli.cmd_models(args, _settings(args))
        if args.command == "evaluate":
            from plantwatch.evaluate import cli as evaluate_cli

            return evaluate_cli.cmd_evaluate(args)
        if args.command == "replay":
            from plantwatch.batch import replay_cli

            # not _settings(args): --data-dir is where replay writes, not where the default
            # archive (<data_dir>/archive of the configured data folder) is
            return replay_cli.cmd(args, Settings())
    except PlantwatchError as exc:
        print(f"plantwatch: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "plantwatch: aborted; unacknowledged readings stay in the spool "
            "and are sent on the next start",
            file=sys.stderr,
        )
        return 130
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
