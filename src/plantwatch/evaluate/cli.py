"""``plantwatch evaluate nab|tep|cmapss|sim|csv``: one sub-command per evaluator module.

An evaluator module has ``HELP`` (one line), ``configure(parser)`` (its own options) and
``run(args) -> Report``. Every evaluator prints its table; ``--json PATH`` also writes the
figures. The modules import their heavy libraries (scikit-learn) inside functions, so building
this parser stays cheap for every other command.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

from plantwatch.evaluate.datasets import ENV

EVALUATORS: dict[str, str] = {
    "nab": "plantwatch.evaluate.nab",
    "tep": "plantwatch.evaluate.tep",
    "cmapss": "plantwatch.evaluate.cmapss",
    "sim": "plantwatch.evaluate.sim",
    "csv": "plantwatch.evaluate.csvrun",
}


def _module(name: str) -> ModuleType:
    return importlib.import_module(EVALUATORS[name])


def add_parser(sub: Any) -> None:
    ev = sub.add_parser(
        "evaluate",
        help="detection quality on labelled data (NAB, TEP, C-MAPSS, the simulator, any CSV)",
        description="Measure detection quality on public labelled data; prints a table, "
        "--json PATH writes the figures. Datasets are read in place from --datasets DIR, "
        f"${ENV} or ../shared/datasets beside the checkout.",
    )
    ev_sub = ev.add_subparsers(dest="evaluator", required=True, metavar="EVALUATOR")
    for name in EVALUATORS:
        mod = _module(name)
        p = ev_sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        p.add_argument(
            "--json", type=Path, default=None, metavar="PATH", help="also write the figures"
        )
        if name not in ("csv", "sim"):
            p.add_argument(
                "--datasets",
                type=Path,
                default=None,
                metavar="DIR",
                help=f"folder holding the datasets (default ${ENV} or ../shared/datasets)",
            )
        mod.configure(p)


def cmd_evaluate(args: argparse.Namespace) -> int:
    report = _module(args.evaluator).run(args)
    print(report.render())
    if args.json is not None:
        report.write_json(args.json)
        print(f"\nfigures written to {args.json}")
    return 0
