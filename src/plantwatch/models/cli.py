"""``plantwatch train`` and ``plantwatch models list|show|promote``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from plantwatch.core.settings import Settings
from plantwatch.models.registry import Registry, parse_ref
from plantwatch.models.train import ALGORITHMS, THRESHOLD_METHOD


def _registry_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--registry",
        default=None,
        metavar="URL",
        help="model registry: a folder, gs://bucket/prefix or s3://bucket/prefix "
        "(default PLANTWATCH_MODELS__REGISTRY or <data_dir>/models)",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="data folder whose models/ is the default registry (default ./data)",
    )


def add_parsers(sub: Any) -> None:
    t = sub.add_parser(
        "train",
        help="train an anomaly model per machine type from stored history, into the registry",
        description="Features come from the stream's own window code; the threshold is chosen "
        f"on training data only: {THRESHOLD_METHOD}.",
    )
    t.add_argument(
        "--source",
        required=True,
        metavar="URL",
        help="chdb://DIR (a data folder or its clickhouse folder), parquet://PATH (an export "
        "root, a folder of Parquet files or one file) or http(s)://clickhouse:8123",
    )
    t.add_argument("--model", required=True, choices=ALGORITHMS, help="the algorithm")
    t.add_argument("--machine-type", default=None, metavar="T", help="only this machine type")
    t.add_argument("--name", default=None, help="registry name (default: the algorithm)")
    t.add_argument(
        "--since",
        default=None,
        metavar="T",
        help="history from T (ISO 8601 or a span back: 7d), inclusive",
    )
    t.add_argument("--until", default=None, metavar="T", help="history until T (exclusive)")
    t.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    t.add_argument("--promote", action="store_true", help="also promote the new version(s)")
    t.add_argument("--json", action="store_true", help="print the registered metadata as JSON")
    _registry_option(t)

    m = sub.add_parser("models", help="list, show and promote models in the registry")
    m_sub = m.add_subparsers(dest="models_command", required=True)
    ls = m_sub.add_parser("list", help="every version, the promoted one marked")
    ls.add_argument("--machine-type", default=None, metavar="T")
    ls.add_argument("--json", action="store_true")
    show = m_sub.add_parser("show", help="one version's metadata (default: the latest)")
    show.add_argument("model", metavar="TYPE/NAME[/vN]")
    pro = m_sub.add_parser(
        "promote", help="make a version the machine type's model; the stream picks it up"
    )
    pro.add_argument("model", metavar="TYPE/NAME[/vN]")
    for p in (ls, show, pro):
        _registry_option(p)


def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    from plantwatch.models.train import train

    done = train(
        args.source,
        settings,
        algorithm=args.model,
        machine_type=args.machine_type,
        since=args.since,
        until=args.until,
        registry_url=args.registry,
        name=args.name,
        promote=args.promote,
        seed=args.seed,
    )
    if args.json:
        print(json.dumps([d.metadata for d in done], indent=2))
        return 0
    for d in done:
        meta = d.metadata
        tr, thr = meta["training"], meta["threshold"]
        held = meta["metrics"]["holdout_false_alarm_rate"]
        print(
            f"{d.ref}: {tr['windows']:,} windows of {len(tr['machines'])} machines "
            f"({tr['from']} → {tr['to']}), {len(meta['features']['columns'])} features; "
            f"warning {thr['warning']:.4g}, critical {thr['critical']:.4g}; "
            f"held-out windows over warning {held:.2%}" + ("; promoted" if d.promoted else "")
        )
    return 0


def cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    registry = Registry(args.registry or settings.resolved_model_registry())
    if args.models_command == "list":
        refs = registry.versions(args.machine_type)
        promoted = {t: registry.promoted(t) for t in {r.machine_type for r in refs}}
        rows = []
        for r in refs:
            meta = registry.metadata(r)
            rows.append(
                {
                    "model": str(r),
                    "promoted": promoted.get(r.machine_type) == r,
                    "algorithm": meta.get("algorithm"),
                    "registered_at": meta.get("registered_at"),
                    "windows": meta.get("training", {}).get("windows"),
                    "warning": meta.get("threshold", {}).get("warning"),
                }
            )
        if args.json:
            print(json.dumps(rows, indent=2))
        elif not rows:
            print(f"no models in {registry.url}: train one with plantwatch train")
        else:
            print(f"{'model':<40} {'algorithm':<10} {'registered':<25} {'windows':>8}  promoted")
            for row in rows:
                print(
                    f"{row['model']:<40} {row['algorithm'] or '':<10} "
                    f"{row['registered_at'] or '':<25} {row['windows'] or 0:>8,}  "
                    f"{'*' if row['promoted'] else ''}"
                )
        return 0
    mtype, name, version = parse_ref(args.model)
    ref = registry.resolve(mtype, name, version)
    if args.models_command == "show":
        meta = registry.metadata(ref)
        meta["promoted"] = registry.promoted(mtype) == ref
        print(json.dumps(meta, indent=2))
        return 0
    record = registry.promote(ref)
    print(f"{ref} promoted for {mtype} at {record['promoted_at']} by {record['by']}")
    return 0
