"""``plantwatch archive``: look after an archive (wired in ``cli.py``).

    plantwatch archive ls     --at URL [--dataset D ...]
    plantwatch archive verify --at URL [--dataset D ...]           exit 1 on any problem
    plantwatch archive prune  --at URL --older-than 365d [--dataset D ...] [--dry-run]

``URL`` is an archive root (folder, ``file://``, ``gs://``, ``s3://``; see
:mod:`plantwatch.batch.archive` for storage options from the environment). ``--older-than``
takes a span: ``30m``, ``12h``, ``365d``, ``2w``; prune removes whole day partitions dated before
the UTC day of ``now - span``.
"""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from plantwatch.batch import layout
from plantwatch.batch.archive import Archive
from plantwatch.core.settings import Settings


def _span(text: str) -> dt.timedelta:
    try:
        return layout.parse_span(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``archive`` to the subcommands ``sub`` (``ArgumentParser.add_subparsers()``)."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "archive", help="list, verify and prune an archive of exported data"
    )
    a_sub = parser.add_subparsers(dest="archive_command", required=True, metavar="COMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--at",
            default=None,
            metavar="URL",
            help="the archive root (default: PLANTWATCH_ARCHIVE_URL or <data_dir>/archive)",
        )
        p.add_argument(
            "--dataset",
            action="append",
            choices=layout.DATASETS,
            metavar="D",
            help=f"only this dataset (repeatable): {', '.join(layout.DATASETS)}",
        )

    common(a_sub.add_parser("ls", help="partitions with rows and time range, from the manifests"))
    common(
        a_sub.add_parser(
            "verify",
            help="check every file against its manifest (size, sha256) and find unlisted files; "
            "exit 1 on any problem",
        )
    )
    prune = a_sub.add_parser("prune", help="remove day partitions older than a span")
    common(prune)
    prune.add_argument(
        "--older-than", required=True, type=_span, metavar="SPAN", help="e.g. 365d, 12h, 2w"
    )
    prune.add_argument("--dry-run", action="store_true", help="only say what would go")
    return parser


def cmd(args: argparse.Namespace, settings: Settings | None = None) -> int:
    archive = Archive.open(args.at or (settings or Settings()).resolved_archive_url())
    datasets = args.dataset or None
    if args.archive_command == "ls":
        return _ls(archive, datasets)
    if args.archive_command == "verify":
        return _verify(archive, datasets)
    if args.archive_command == "prune":
        now = dt.datetime.now(dt.UTC)
        report = archive.prune(args.older_than, now=now, datasets=datasets, dry_run=args.dry_run)
        verb = "would remove" if report.dry_run else "removed"
        for p in report.partitions:
            print(f"{verb} {p.path()}")
        print(
            f"{verb} {len(report.partitions)} partitions, {report.files} files, "
            f"{report.rows} rows, {report.bytes} bytes (dated before {report.cutoff})"
        )
        return 0
    raise AssertionError(args.archive_command)


def _ls(archive: Archive, datasets: list[str] | None) -> int:
    total = 0
    for dataset in datasets or layout.DATASETS:
        for p in archive.partitions(dataset):
            m = archive.manifest(p) or {}
            files = len(m.get("files", []))
            rows = int(m.get("rows", 0))
            total += rows
            print(
                f"{p.path()}\t{rows} rows\t{files} files\t"
                f"{m.get('min_ts') or '-'} .. {m.get('max_ts') or '-'}"
            )
    print(f"{total} rows")
    return 0


def _verify(archive: Archive, datasets: list[str] | None) -> int:
    report = archive.verify(datasets)
    for problem in report.problems:
        print(f"{problem.kind}\t{problem.path}\t{problem.detail}")
    state = "ok" if report.ok else f"{len(report.problems)} problems"
    print(
        f"{state}: {report.partitions} partitions, {report.files} files, {report.rows} rows, "
        f"{report.bytes} bytes checked in {archive.root_url}"
    )
    return 0 if report.ok else 1
