"""The stream's model stage: a real PCA model (fitted on synthetic correlated window features,
exported to ONNX, registered and promoted in a folder registry) scoring closed windows through
:class:`ModelScorer`: anomaly rows, severities, hot reload of a newly promoted version on a fake
clock, a broken or unsuitable model never stopping the stream, pickling, and the pipeline."""

from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from plantwatch.detect.multivariate import PCAModel
from plantwatch.models.features import (
    DEFAULT_STATS,
    FeatureSpec,
    machine_matrix,
    spec_from_features,
)
from plantwatch.models.registry import ModelRef, Registry
from plantwatch.models.scoring import ModelScorer
from plantwatch.stream import Pipeline, PipelineConfig
from plantwatch.stream.outputs import ANOMALIES_SCHEMA, FEATURES_SCHEMA

from batches import T0_MS, readings

SENSORS = ("cur", "tmp", "vib")
KINDS = ("current", "temperature", "vibration")
SPEC = FeatureSpec("pump", SENSORS, KINDS, DEFAULT_STATS, window_s=10.0)
TS = FEATURES_SCHEMA.field("window_end").type
# one latent load per (machine, window) moves every sensor's mean: correlated features
CENTRE = np.array([10.0, 0.5, 11.0, 60.0, 0.3, 60.6, 2.0, 0.1, 2.2])
LOAD = np.array([2.0, 0.0, 2.0, 5.0, 0.0, 5.0, 0.5, 0.0, 0.5])
NOISE = np.array([0.1, 0.02, 0.12, 0.3, 0.01, 0.3, 0.05, 0.005, 0.06])
TMP_MEAN = SPEC.columns.index("tmp.mean")


def normal_rows(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` normal feature rows in ``SPEC.columns`` order."""
    load = rng.normal(0.0, 1.0, (n, 1))
    return CENTRE + load * LOAD + rng.normal(0.0, 1.0, (n, len(CENTRE))) * NOISE


def features(machines: list[str], end_ms: int, x: np.ndarray, version: int = 1) -> pa.Table:
    """FEATURES_SCHEMA rows (one per sensor) of one window of ``machines``; row i of ``x``
    (``SPEC.columns`` order) is machine i's; NaN statistics leave the sensor's row out."""
    rows = []
    for m, xr in zip(machines, x, strict=True):
        for k, (sensor, kind) in enumerate(zip(SENSORS, KINDS, strict=True)):
            mean, std, mx = xr[3 * k : 3 * k + 3]
            if np.isnan(mean):
                continue
            rows.append(
                {
                    "machine_id": m,
                    "sensor_id": sensor,
                    "kind": kind,
                    "window_start": end_ms - 10_000,
                    "window_end": end_ms,
                    "count": 10,
                    "mean": float(mean),
                    "min": float(mean) - 1.0,
                    "max": float(mx),
                    "std": float(std),
                    "last": float(mean),
                    "rms": None,
                    "version": version,
                    "computed_at": end_ms,
                }
            )
    t = pa.Table.from_pylist(
        rows,
        schema=pa.schema(
            [f if f.type != TS else pa.field(f.name, pa.int64()) for f in FEATURES_SCHEMA]
        ),
    )
    return t.cast(FEATURES_SCHEMA)


def types_of(t: pa.Table, types: dict[str, str]) -> np.ndarray:
    return np.array([types[m] for m in t.column("machine_id").to_pylist()], dtype=object)


@dataclass
class Fitted:
    model: PCAModel
    onnx: bytes
    spec: FeatureSpec
    warning: float  # 2 × the largest held-out score of 2000 normal rows
    moderate: np.ndarray  # a row scoring 2 × warning: tmp.mean off, everything else central
    big: np.ndarray  # a row scoring far over 4 × warning


@pytest.fixture(scope="module")
def fitted() -> Fitted:
    rng = np.random.default_rng(7)
    x = normal_rows(600, rng)
    spec = SPEC.with_moments(x)
    model = PCAModel().fit(x)
    warning = 2.0 * float(np.max(model.score(normal_rows(2000, rng))))

    def off(d: float) -> np.ndarray:
        r = CENTRE.copy()
        r[TMP_MEAN] += d
        return r

    def score(d: float) -> float:
        return float(model.score(off(d)[None, :])[0])

    lo, hi = 0.0, 100.0
    for _ in range(60):  # tmp.mean offset with score 2 × warning (score grows with it)
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if score(mid) < 2 * warning else (lo, mid)
    moderate, big = off(hi), off(200.0)
    assert 1.9 * warning < score(hi) < 2.1 * warning
    assert score(200.0) > 20 * warning
    return Fitted(model, model.to_onnx(), spec, warning, moderate, big)


def register(
    reg: Registry,
    f: Fitted,
    *,
    warning: float | None = None,
    critical: float | None = None,
    window_s: float = 10.0,
    promote: bool = True,
) -> ModelRef:
    """Register (and promote) the fitted model with metadata as ``train.fit_type`` writes it."""
    spec = (
        f.spec
        if window_s == f.spec.window_s
        else FeatureSpec.from_json({**f.spec.as_json(), "window_s": window_s})
    )
    w = f.warning if warning is None else warning
    meta: dict[str, Any] = {
        "algorithm": "pca",
        "features": spec.as_json(),
        "threshold": {
            "warning": w,
            "critical": 4 * w if critical is None else critical,
            "method": "test: 2 × the largest held-out score; critical 4 × warning",
        },
        "training": {"windows": 600, "machines": ["m1", "m2", "m3"]},
    }
    ref = reg.register("pump", "pca", f.onnx, meta)
    if promote:
        reg.promote(ref)
    return ref


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


PUMPS = {"m1": "pump", "m2": "pump", "m3": "pump", "f1": "fan"}
E1, E2 = T0_MS + 10_000, T0_MS + 20_000


def test_only_the_unusual_machine_gets_an_anomaly_row_with_its_severity(
    tmp_path: Path, fitted: Fitted
) -> None:
    reg = Registry(str(tmp_path))
    ref = register(reg, fitted)
    scorer = ModelScorer(str(tmp_path), reload_s=5.0, window_s=10.0, clock=Clock())
    rng = np.random.default_rng(1)

    normal = features(["m1", "m2", "m3", "f1"], E1, normal_rows(4, rng))
    out = scorer.score(normal, types_of(normal, PUMPS), now_ms=E1 + 500)
    assert out.num_rows == 0 and out.schema == ANOMALIES_SCHEMA
    assert scorer.active() == {"pump": ref} and scorer.loads == 1

    x = np.vstack([normal_rows(1, rng), fitted.moderate, fitted.big, normal_rows(1, rng)])
    window = features(["m1", "m2", "m3", "f1"], E2, x)
    out = scorer.score(window, types_of(window, PUMPS), now_ms=E2 + 700)
    assert out.schema == ANOMALIES_SCHEMA
    rows = sorted(out.to_pylist(), key=lambda r: r["machine_id"])
    assert [r["machine_id"] for r in rows] == ["m2", "m3"]
    expected = fitted.model.score(np.vstack([fitted.moderate, fitted.big]))
    for r, severity, row, score in zip(
        rows, ["warning", "critical"], [fitted.moderate, fitted.big], expected, strict=True
    ):
        assert r["ts"].timestamp() * 1000 == E2  # the window's end
        assert r["detected_at"].timestamp() * 1000 == E2 + 700
        assert r["machine_type"] == "pump"
        assert (r["sensor_id"], r["kind"]) == ("tmp", "temperature")  # the most unusual
        assert r["detector"] == "model:pca"
        assert r["model_version"] == "pump/pca/v1"
        assert r["severity"] == severity
        assert r["score"] == pytest.approx(score, rel=1e-3)  # the ONNX graph, in float32
        assert r["threshold"] == pytest.approx(fitted.warning)
        assert r["value"] == pytest.approx(row[TMP_MEAN])
        assert "tmp.mean" in r["message"]
    assert scorer.loads == 1  # no reload within reload_s


def test_a_newly_promoted_version_is_used_after_reload_s_without_a_new_scorer(
    tmp_path: Path, fitted: Fitted, caplog: pytest.LogCaptureFixture
) -> None:
    reg = Registry(str(tmp_path))
    v1 = register(reg, fitted)
    clock = Clock()
    scorer = ModelScorer(str(tmp_path), reload_s=5.0, window_s=10.0, clock=clock)
    rng = np.random.default_rng(2)
    window = features(["m1", "m2"], E1, normal_rows(2, rng))
    types = types_of(window, PUMPS)
    assert scorer.score(window, types, now_ms=E1).num_rows == 0
    assert scorer.active() == {"pump": v1} and scorer.loads == 1

    v2 = register(reg, fitted, warning=1e-9, critical=1e12)  # flags every window
    clock.t += 4.9
    assert scorer.score(window, types, now_ms=E1).num_rows == 0  # still v1
    assert scorer.loads == 1
    clock.t += 0.1
    out = scorer.score(window, types, now_ms=E1)
    assert sorted(out.column("machine_id").to_pylist()) == ["m1", "m2"]
    assert set(out.column("model_version").to_pylist()) == {"pump/pca/v2"}
    assert set(out.column("severity").to_pylist()) == {"warning"}
    assert pc.all(pc.equal(out.column("threshold"), 1e-9)).as_py()
    assert scorer.active() == {"pump": v2} and scorer.loads == 2

    # v3 is promoted but its model file was damaged: logged, v2 keeps scoring
    v3 = register(reg, fitted)
    (tmp_path / v3.folder / "model.onnx").write_bytes(fitted.onnx[:-7] + b"damaged")
    clock.t += 5.0
    with caplog.at_level(logging.WARNING, logger="plantwatch.models"):
        out = scorer.score(window, types, now_ms=E1)
    assert set(out.column("model_version").to_pylist()) == {"pump/pca/v2"}
    assert out.num_rows == 2
    assert scorer.active() == {"pump": v2} and scorer.loads == 2
    warned = [r.getMessage() for r in caplog.records if r.name == "plantwatch.models"]
    assert any("sha256" in m and "keeping the one in use" in m for m in warned), warned

    # promoting v2 again: nothing to load; un-promoting: the model stops
    reg.promote(v2)
    clock.t += 5.0
    assert scorer.score(window, types, now_ms=E1).num_rows == 2
    assert scorer.loads == 2
    (tmp_path / "pump" / "promoted.json").unlink()
    clock.t += 5.0
    assert scorer.score(window, types, now_ms=E1).num_rows == 0
    assert scorer.active() == {}


def test_a_promoted_model_onnxruntime_cannot_open_keeps_the_previous_one(
    tmp_path: Path, fitted: Fitted, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A version whose bytes match their sha256 but are no ONNX graph onnxruntime can open (a
    bad export, an opset this onnxruntime lacks): logged, the model in use keeps scoring."""
    reg = Registry(str(tmp_path))
    v1 = register(reg, fitted, warning=1e-9)
    clock = Clock()
    scorer = ModelScorer(str(tmp_path), reload_s=5.0, window_s=10.0, clock=clock)
    window = features(["m1"], E1, normal_rows(1, np.random.default_rng(5)))
    types = types_of(window, PUMPS)
    assert scorer.score(window, types, now_ms=E1).num_rows == 1
    broken = reg.register("pump", "pca", b"not an onnx graph", reg.metadata(v1))
    reg.promote(broken)
    clock.t += 5.0
    try:
        out = scorer.score(window, types, now_ms=E1)
    except Exception as exc:  # the point: nothing may escape
        pytest.fail(
            "BUG ModelScorer.refresh: onnxruntime's InvalidProtobuf/InvalidArgument/Fail derive "
            f"from Exception, not RuntimeError, so {type(exc).__name__} escapes and would stop "
            "the stream; catch Exception around Active.of(...) (session creation)"
        )
    assert out.column("model_version").to_pylist() == ["pump/pca/v1"]
    assert scorer.active() == {"pump": v1}
    # a version never changes: the broken one is not downloaded again at every reload
    loads: list[object] = []
    real_load = scorer._registry.load  # type: ignore[union-attr]
    monkeypatch.setattr(scorer._registry, "load", lambda ref: loads.append(ref) or real_load(ref))
    for _ in range(3):
        clock.t += 5.0
        assert scorer.score(window, types, now_ms=E1).num_rows == 1
    assert loads == []


def test_a_model_of_another_window_size_is_not_used(tmp_path: Path, fitted: Fitted) -> None:
    reg = Registry(str(tmp_path))
    register(reg, fitted, warning=1e-9, window_s=5.0)  # would flag everything
    window = features(["m1"], E1, fitted.big[None, :])
    types = types_of(window, PUMPS)
    scorer = ModelScorer(str(tmp_path), reload_s=5.0, window_s=10.0, clock=Clock())
    assert scorer.score(window, types, now_ms=E1).num_rows == 0
    assert scorer.active() == {} and scorer.loads == 0
    # the same registry for a stream closing 5 s windows: used
    five = ModelScorer(str(tmp_path), reload_s=5.0, window_s=5.0, clock=Clock())
    assert five.score(window, types, now_ms=E1).num_rows == 1 and five.loads == 1


def test_rows_missing_more_than_half_their_features_are_not_scored(
    tmp_path: Path, fitted: Fitted
) -> None:
    reg = Registry(str(tmp_path))
    register(reg, fitted, warning=1e-9)  # flags every row it scores
    x = normal_rows(3, np.random.default_rng(3))
    x[1, 0:3] = np.nan  # m2 without cur: 3 of 9 missing, imputed and scored
    x[2, 0:6] = np.nan  # m3 with vib only: 6 of 9 missing
    window = features(["m1", "m2", "m3"], E1, x)
    scorer = ModelScorer(str(tmp_path), reload_s=5.0, window_s=10.0, clock=Clock())
    out = scorer.score(window, types_of(window, PUMPS), now_ms=E1)
    assert sorted(out.column("machine_id").to_pylist()) == ["m1", "m2"]


def test_the_scorer_pickles_without_sessions_and_scores_the_same_again(
    tmp_path: Path, fitted: Fitted
) -> None:
    reg = Registry(str(tmp_path))
    ref = register(reg, fitted)
    scorer = ModelScorer(str(tmp_path), reload_s=5.0, window_s=10.0, clock=Clock())
    x = np.vstack([fitted.moderate, fitted.big, normal_rows(1, np.random.default_rng(4))])
    window = features(["m1", "m2", "m3"], E1, x)
    types = types_of(window, PUMPS)
    first = scorer.score(window, types, now_ms=E1 + 1)
    assert first.num_rows == 2

    restored = pickle.loads(pickle.dumps(scorer))
    assert restored.active() == {}  # no onnxruntime session travels
    assert (restored.registry_url, restored.reload_s, restored.window_s) == (
        str(tmp_path),
        5.0,
        10.0,
    )
    again = restored.score(window, types, now_ms=E1 + 1)
    assert again.equals(first)
    assert restored.active() == {"pump": ref} and restored.loads == 2
    assert scorer.score(window, types, now_ms=E1 + 1).equals(first)  # the original still works


def test_no_model_no_rows(tmp_path: Path, fitted: Fitted) -> None:
    window = features(["m1", "f1"], E1, np.vstack([fitted.big, fitted.big]))
    types = types_of(window, PUMPS)
    off = ModelScorer(None, clock=Clock())
    out = off.score(window, types, now_ms=E1)
    assert out.num_rows == 0 and out.schema == ANOMALIES_SCHEMA and off.loads == 0

    reg = Registry(str(tmp_path))
    register(reg, fitted, promote=False)  # registered, never promoted
    scorer = ModelScorer(str(tmp_path), clock=Clock())
    assert scorer.score(window, types, now_ms=E1).num_rows == 0 and scorer.loads == 0
    fan_only = window.filter(pc.equal(window.column("machine_id"), "f1"))
    register(reg, fitted)  # now the pump has a model; the fan still has none
    scorer = ModelScorer(str(tmp_path), clock=Clock())
    assert scorer.score(fan_only, types_of(fan_only, PUMPS), now_ms=E1).num_rows == 0
    empty = FEATURES_SCHEMA.empty_table()
    assert scorer.score(empty, np.zeros(0, object), now_ms=E1).num_rows == 0
    out = scorer.score(window, types, now_ms=E1)
    assert out.column("machine_id").to_pylist() == ["m1"]  # the pump; the fan has no model


def test_a_registry_that_cannot_be_read_gives_no_rows_and_no_exception(
    tmp_path: Path, fitted: Fitted
) -> None:
    (tmp_path / "pump").mkdir()
    (tmp_path / "pump" / "promoted.json").write_text("{not json")
    window = features(["m1"], E1, fitted.big[None, :])
    scorer = ModelScorer(str(tmp_path), clock=Clock())
    assert scorer.score(window, types_of(window, PUMPS), now_ms=E1).num_rows == 0


# -- the pipeline ------------------------------------------------------------------------------


def plant(seconds: int, *, start_s: int = 0, hot: tuple[str, int, int] | None = None) -> pa.Table:
    """Pumps p1, p2 at 1 Hz: current, temperature, vibration; ``hot=(machine, from_s, to_s)``
    runs that machine's temperature 30 °C above normal for those seconds."""
    rng = np.random.default_rng(start_s + 11)
    s = np.arange(start_s, start_s + seconds)
    parts = []
    for machine in ("p1", "p2"):
        for sensor, kind, centre, sd in (
            ("cur", "current", 10.0, 0.2),
            ("tmp", "temperature", 60.0, 0.3),
            ("vib", "vibration", 2.0, 0.05),
        ):
            values = centre + rng.normal(0.0, sd, seconds)
            if hot is not None and machine == hot[0] and sensor == "tmp":
                values[(s >= hot[1]) & (s < hot[2])] += 30.0
            parts.append(
                readings(
                    machine=machine,
                    sensor=sensor,
                    kind=kind,
                    values=values,
                    ts_ms=T0_MS + 1000 * s,
                    seq=(s + 1).tolist(),
                )
            )
    return pa.concat_tables(parts)


def test_the_pipeline_emits_model_anomalies_when_windows_close(tmp_path: Path) -> None:
    types = {"p1": "pump", "p2": "pump"}
    config = PipelineConfig(window_s=10.0)
    # train as plantwatch train does: the pipeline's own features of normal history
    history = Pipeline(config, machine_types=types, detectors=[], rules=[])
    hist = plant(1200)
    outs = [history.process(hist, now_ms=T0_MS + 1_201_000), history.flush(now_ms=T0_MS)]
    feats = pa.concat_tables([o.features for o in outs])
    ftypes = types_of(feats, types)
    spec = spec_from_features(feats, ftypes, "pump", window_s=10.0)
    assert spec.sensors == SENSORS
    x = machine_matrix(feats, ftypes, spec).x
    spec = spec.with_moments(x)
    model = PCAModel().fit(x)
    warning = 2.0 * float(np.max(model.score(x)))
    reg = Registry(str(tmp_path))
    ref = reg.register(
        "pump",
        "pca",
        model.to_onnx(),
        {
            "algorithm": "pca",
            "features": spec.as_json(),
            "threshold": {"warning": warning, "critical": 2 * warning, "method": "test"},
        },
    )
    reg.promote(ref)

    scorer = ModelScorer(str(tmp_path), reload_s=5.0, window_s=10.0, clock=Clock())
    live = Pipeline(config, machine_types=types, detectors=[], rules=[], models=scorer)
    # an hour later (windows the model has not seen), p2 runs hot in two windows
    start = 3600
    batch = plant(100, start_s=start, hot=("p2", start + 60, start + 80))
    first = live.process(batch, now_ms=T0_MS + 1000 * (start + 101))
    anomalies = first.anomalies
    assert anomalies.schema == ANOMALIES_SCHEMA
    model_rows = [r for r in anomalies.to_pylist() if r["detector"] == "model:pca"]
    assert model_rows, "windows closed by the watermark are scored in the same batch"
    assert {r["machine_id"] for r in model_rows} == {"p2"}
    ends = sorted(int(r["ts"].timestamp() * 1000) - T0_MS for r in model_rows)
    assert ends == [1000 * (start + 70), 1000 * (start + 80)]
    assert {r["sensor_id"] for r in model_rows} == {"tmp"}
    assert {r["model_version"] for r in model_rows} == {"pump/pca/v1"}
    assert all(r["severity"] == "critical" for r in model_rows)
    tail = live.flush(now_ms=T0_MS + 1000 * (start + 200))
    assert tail.anomalies.num_rows == 0  # the last, normal windows
    assert scorer.loads == 1
