"""``plantwatch train``'s code on a Parquet history: features through the stream's pipeline,
the threshold from held-out training windows, a registered version that scores like the fit;
and the errors a user meets first."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from plantwatch.core.errors import ConfigError
from plantwatch.core.settings import Settings
from plantwatch.models.registry import Registry
from plantwatch.models.scoring import run_scores, session
from plantwatch.models.train import HOLDOUT, MARGIN, QUANTILE, train

T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SENSORS = [("vib", "vibration", "mm/s", 3.0), ("temp", "temperature", "°C", 60.0),
           ("amps", "current", "A", 40.0)]  # fmt: skip


def history(path: Path, *, seconds: int = 3600, machines: int = 2, seed: int = 0) -> Path:
    """Readings of pumps whose three sensors follow one shared load, 1 Hz."""
    rng = np.random.default_rng(seed)
    t = np.arange(seconds)
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("m", "s", "k", "u", "v", "ts", "seq")}
    for m in range(machines):
        load = 0.6 + 0.2 * np.sin(2 * np.pi * t / 900 + m) + rng.normal(0, 0.01, seconds)
        for j, (sensor, kind, unit, level) in enumerate(SENSORS):
            value = level * (0.7 + 0.5 * load) + rng.normal(0, 0.02 * level, seconds)
            cols["m"].append(np.full(seconds, f"P-{m}"))
            cols["s"].append(np.full(seconds, sensor))
            cols["k"].append(np.full(seconds, kind))
            cols["u"].append(np.full(seconds, unit))
            cols["v"].append(value)
            cols["ts"].append(T0_MS + t * 1000 + j)
            cols["seq"].append(t)
    n = machines * len(SENSORS) * seconds
    table = pa.table(
        {
            "machine_id": np.concatenate(cols["m"]),
            "machine_type": np.full(n, "centrifugal_pump"),
            "sensor_id": np.concatenate(cols["s"]),
            "kind": np.concatenate(cols["k"]),
            "ts": pa.array(np.concatenate(cols["ts"]), pa.int64()).cast(
                pa.timestamp("ms", tz="UTC")
            ),
            "seq": pa.array(np.concatenate(cols["seq"]), pa.uint64()),
            "value": np.concatenate(cols["v"]),
            "unit": np.concatenate(cols["u"]),
            "quality": np.full(n, "good"),
            "extra": np.zeros(n),  # other columns are ignored
        }
    )
    path.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path / "part-0.parquet")
    return path


def test_training_on_parquet_registers_a_model_with_its_threshold(tmp_path: Path) -> None:
    src = history(tmp_path / "hist")
    settings = Settings(data_dir=tmp_path / "data")
    (done,) = train(
        f"parquet://{src}", settings, algorithm="pca", registry_url=str(tmp_path / "reg"),
        promote=True,
    )  # fmt: skip
    assert str(done.ref) == "centrifugal_pump/pca/v1"
    meta = done.metadata
    assert meta["features"]["sensors"] == ["amps", "temp", "vib"]
    assert meta["features"]["columns"][:3] == ["amps.mean", "amps.std", "amps.max"]
    windows = meta["training"]["windows"]
    assert 2 * 355 <= windows <= 2 * 360  # 10-s windows of one hour, two machines
    assert meta["training"]["fit_windows"] == int(windows * (1 - HOLDOUT))
    assert meta["training"]["source"] == f"parquet://{src}"
    p999 = meta["metrics"]["holdout_score_quantiles"]["p999"]
    assert meta["threshold"]["warning"] == pytest.approx(MARGIN * p999)
    assert meta["threshold"]["critical"] == pytest.approx(2 * MARGIN * p999)
    assert str(QUANTILE * 100)[:4] in meta["threshold"]["method"]
    assert meta["metrics"]["holdout_false_alarm_rate"] <= 0.01

    registry = Registry(str(tmp_path / "reg"))
    assert registry.promoted("centrifugal_pump") == done.ref
    loaded = registry.load(done.ref)
    # the registered graph flags a window where one sensor leaves the shared load
    mean = np.array(meta["features"]["mean"])
    std = np.array(meta["features"]["std"])
    normal = mean[None, :]
    broken = normal.copy()
    broken[0, 3] += 12 * std[3]  # temp.mean far off while the others stay
    scores = run_scores(session(loaded.onnx), np.vstack([normal, broken]))
    assert scores[0] < meta["threshold"]["warning"] < scores[1]


def test_the_same_history_gives_the_same_model(tmp_path: Path) -> None:
    src = history(tmp_path / "hist", seconds=1800)
    settings = Settings(data_dir=tmp_path / "data")
    kw = {"algorithm": "iforest", "registry_url": str(tmp_path / "reg"), "seed": 3}
    (a,) = train(f"parquet://{src}", settings, **kw)  # type: ignore[arg-type]
    (b,) = train(f"parquet://{src}", settings, **kw)  # type: ignore[arg-type]
    assert (a.ref.version, b.ref.version) == (1, 2)
    assert a.metadata["threshold"] == b.metadata["threshold"]
    assert a.metadata["model_sha256"] == b.metadata["model_sha256"]


def test_errors_name_the_problem(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    with pytest.raises(ConfigError, match="unsupported source"):
        train("csv://x", settings, algorithm="pca")
    with pytest.raises(ConfigError, match="unknown model 'lstm'"):
        train("parquet://x", settings, algorithm="lstm")
    with pytest.raises(ConfigError, match="no Parquet files"):
        train(f"parquet://{tmp_path / 'empty'}", settings, algorithm="pca")
    with pytest.raises(ConfigError, match="no chDB data"):
        train(f"chdb://{tmp_path}", settings, algorithm="pca")
    assert not (tmp_path / "metadata").exists()  # no chDB folder was made there
    bad = tmp_path / "bad"
    bad.mkdir()
    pq.write_table(pa.table({"machine_id": ["a"], "value": [1.0]}), bad / "x.parquet")
    with pytest.raises(ConfigError, match="is not a readings file: it lacks"):
        train(f"parquet://{bad}", settings, algorithm="pca")
    src = history(tmp_path / "hist", seconds=120)
    with pytest.raises(ConfigError, match="no readings of machine type 'motor_fan'"):
        train(f"parquet://{src}", settings, algorithm="pca", machine_type="motor_fan")
    with pytest.raises(ConfigError, match=r"only \d+ usable windows"):
        train(f"parquet://{src}", settings, algorithm="pca", registry_url=str(tmp_path / "r"))
    with pytest.raises(ConfigError, match="not a time"):
        train(f"parquet://{src}", settings, algorithm="pca", since="yesterday")
