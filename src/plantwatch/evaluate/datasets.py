"""Where the public labelled datasets are: ``--datasets DIR``, else ``PLANTWATCH_DATASETS``, else
``../shared/datasets`` beside the checkout (read in place, never copied into the repository)."""

from __future__ import annotations

import os
from pathlib import Path

from plantwatch.core.errors import ConfigError

_CHECKOUT = Path(__file__).resolve().parents[3]
ENV = "PLANTWATCH_DATASETS"


def datasets_dir(given: Path | None = None) -> Path:
    if given is not None:
        return given
    env = os.environ.get(ENV)
    if env:
        return Path(env)
    return _CHECKOUT.parent / "shared" / "datasets"


def dataset(name: str, given: Path | None = None) -> Path:
    """The folder of dataset ``name`` (``NAB``, ``TEP``, ``CMAPSS_FD001``), or a ConfigError that
    says where it was looked for and how to point at it."""
    root = datasets_dir(given)
    path = root / name
    if not path.is_dir():
        raise ConfigError(
            f"dataset {name!r} not found at {path}: pass --datasets DIR (the folder holding "
            f"{name}/) or set {ENV}"
        )
    return path
