"""``plantwatch replay``: archived readings back through the pipeline (wired in ``cli.py``).

    plantwatch replay --from URL [--since T] [--until T] [--machine ID ...] [--speed X|max]
                      (--bus kafka://HOST:PORT | --store URL | --data-dir DIR)

``--from`` is an archive root (folder, ``file://``, ``gs://``, ``s3://``); T is ISO-8601 (a time
without a zone is UTC) or a span back from now (24h, 7d); ``--since`` is inclusive, ``--until``
exclusive. ``--store`` takes ``chdb:///abs/dir`` or ``http(s)://host:port``; ``--data-dir`` a
plantwatch data folder (its chDB store, claimed like ``plantwatch run`` does, so not while a plant
runs on it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from plantwatch.batch.layout import LayoutError, parse_instant
from plantwatch.cliargs import positive, speed, stop_on_signals
from plantwatch.core.errors import ConfigError
from plantwatch.core.settings import Settings


def _time(text: str) -> dt.datetime:
    try:
        return parse_instant(text)
    except LayoutError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``replay`` to the subcommands ``sub`` (``ArgumentParser.add_subparsers()``)."""
    p: argparse.ArgumentParser = sub.add_parser(
        "replay",
        help="feed archived readings back through the pipeline (Kafka or a store)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--from",
        dest="source",
        default=None,
        metavar="URL",
        help="archive root (default: PLANTWATCH_ARCHIVE_URL or <data_dir>/archive)",
    )
    p.add_argument("--since", type=_time, default=None, metavar="T", help="from T (inclusive)")
    p.add_argument("--until", type=_time, default=None, metavar="T", help="up to T (exclusive)")
    p.add_argument(
        "--machine",
        dest="machines",
        action="append",
        default=None,
        metavar="ID",
        help="only this machine (repeat for more)",
    )
    p.add_argument(
        "--speed",
        type=speed,
        default=None,
        metavar="X|max",
        help="event-time seconds per wall second, or 'max' (default: as fast as possible)",
    )
    p.add_argument(
        "--batch-rows", type=positive(int), default=50_000, metavar="N", help="readings per batch"
    )
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--bus", metavar="URL", help="kafka://host:port: the raw topic")
    target.add_argument("--store", metavar="URL", help="chdb:///abs/dir or http(s)://host:port")
    target.add_argument("--data-dir", type=Path, metavar="DIR", help="a plantwatch data folder")
    return p


def cmd(args: argparse.Namespace, settings: Settings | None = None) -> int:
    """Run the replay the arguments describe and print its report (JSON)."""
    from plantwatch.batch.archive import Archive
    from plantwatch.batch.replay import BusTarget, ReplayTarget, StoreTarget, replay

    settings = settings or Settings()
    if args.since and args.until and args.since >= args.until:
        raise ConfigError(f"--since {args.since} is not before --until {args.until}")
    archive = Archive.open(args.source or settings.resolved_archive_url())
    with ExitStack() as cleanup:
        target: ReplayTarget
        if args.bus:
            target = BusTarget(args.bus, settings)
        else:
            if args.data_dir is not None:
                from plantwatch.alert.service import claim_store

                lock, store = claim_store(settings.model_copy(update={"data_dir": args.data_dir}))
                cleanup.callback(lock.release)
            else:
                from plantwatch.store import open_configured

                store = open_configured(settings.model_copy(update={"store_url": args.store}))
            cleanup.callback(store.close)
            target = StoreTarget(store, settings)
        cleanup.callback(target.close)
        stop = cleanup.enter_context(stop_on_signals())
        report = replay(
            archive,
            target=target,
            since=args.since,
            until=args.until,
            machines=args.machines,
            speed=args.speed,
            batch_rows=args.batch_rows,
            stop=stop,
        )
    print(json.dumps(report.as_dict()))
    if report.rows_read == 0:
        print(
            f"plantwatch: nothing to replay: {archive.root_url} holds no readings"
            + (
                " for the given --since/--until/--machine"
                if args.since or args.until or args.machines
                else ""
            )
            + " (plantwatch archive ls shows what it holds)",
            file=sys.stderr,
        )
        return 1
    return 130 if report.stopped else 0
