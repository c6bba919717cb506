"""One check suite for every detector ``plantwatch.detect`` exports (river's ``checks/``).

Detectors are discovered, not listed: anything public in ``plantwatch.detect`` that is a class
with an ``evaluate`` method and a string ``name``. Each needs an entry in ``FACTORIES`` (how to
build it with its defaults); a detector without one fails every check by name instead of being
skipped. The checks: seeded determinism, pickle round trip mid-stream, bad input (NaN, ±inf,
count 0, empty) never raises, not even with warnings turned into errors, findings aligned with
the input and levels in {0, 1, 2}, no verdict where there is no data, input left untouched.
"""

from __future__ import annotations

import dataclasses
import inspect
import pickle
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import numpy.typing as npt
import pytest

import plantwatch.detect as detect
from plantwatch.detect import (
    DEFAULT_LIMITS,
    Detector,
    Finding,
    NoData,
    OutOfRange,
    RobustBaseline,
    StaticLimits,
    Stuck,
    Windows,
    default_detectors,
)
from plantwatch.detect.base import F64, KIND_INDEX

#: How to build each exported detector with its defaults. A new detector needs an entry here.
FACTORIES: dict[str, Callable[[], Detector]] = {
    "StaticLimits": StaticLimits,
    "RobustBaseline": RobustBaseline,
    "Stuck": Stuck,
    "NoData": NoData,
    "OutOfRange": OutOfRange,
    "PageHinkley": detect.PageHinkley,
}


def _discover() -> dict[str, type]:
    found: dict[str, type] = {}
    for attr in dir(detect):
        obj = getattr(detect, attr)
        if (
            not attr.startswith("_")
            and inspect.isclass(obj)
            and callable(getattr(obj, "evaluate", None))
            and isinstance(getattr(obj, "name", None), str)
        ):
            found[attr] = obj
    return found


DISCOVERED = _discover()
NAMES = sorted(DISCOVERED)


def make(name: str) -> Detector:
    factory = FACTORIES.get(name)
    if factory is None:
        pytest.fail(
            f"plantwatch.detect exports detector {name!r} but FACTORIES in {__name__} has no "
            "entry for it: add one so the check suite runs it"
        )
    det = factory()
    assert isinstance(det, DISCOVERED[name])
    return det


def test_every_exported_detector_has_a_factory() -> None:
    missing = sorted(set(DISCOVERED) - set(FACTORIES))
    stale = sorted(set(FACTORIES) - set(DISCOVERED))
    assert not missing, f"exported detectors without a factory in FACTORIES: {missing}"
    assert not stale, f"FACTORIES entries that plantwatch.detect no longer exports: {stale}"


def test_discovery_finds_the_default_set() -> None:
    defaults = {type(d).__name__ for d in default_detectors()}
    assert defaults == {"StaticLimits", "RobustBaseline", "Stuck", "NoData", "OutOfRange"}
    assert defaults <= set(DISCOVERED)
    assert "Detector" not in DISCOVERED  # the Protocol declares a name but has none


# -- input --------------------------------------------------------------------------------------

WINDOW_MS = 10_000
#: (machine type, kind) of the stream's sensors: every default limit, plus sensors no limit
#: covers (unknown machine type, a kind without a limit, an unknown kind).
SENSORS: list[tuple[str, int]] = [(m, KIND_INDEX[k]) for m, k in DEFAULT_LIMITS] + [
    ("unknown", KIND_INDEX["vibration"]),
    ("motor_fan", KIND_INDEX["flow"]),
    ("centrifugal_pump", -1),
]
N = len(SENSORS)
#: A typical level per kind index (-1: unknown kind), near the default limits.
TYPICAL = {
    KIND_INDEX["vibration"]: 3.0,
    KIND_INDEX["temperature"]: 65.0,
    KIND_INDEX["current"]: 45.0,
    KIND_INDEX["pressure"]: 150.0,
    KIND_INDEX["flow"]: 120.0,
    -1: 10.0,
}
SILENT = {0: range(15, 30), 3: range(0, 8)}  # sensor -> steps without data (3: not seen yet)


def _nan_where(empty: npt.NDArray[np.bool_], x: F64) -> F64:
    return np.where(empty, np.nan, x)


def stream(seed: int, steps: int = 40) -> list[Windows]:
    """A random but plausible sequence of closed windows, one row per sensor per window."""
    rng = np.random.default_rng(seed)
    kind = np.array([k for _, k in SENSORS], np.int8)
    mtype = np.array([m for m, _ in SENSORS], dtype=object)
    base = np.array([TYPICAL[int(k)] for k in kind])
    last_seen = np.full(N, -1, np.int64)
    out = []
    for step in range(steps):
        start, end = step * WINDOW_MS, (step + 1) * WINDOW_MS
        count = rng.integers(1, 9, N)
        count[rng.random(N) < 0.1] = 0
        for s, silent in SILENT.items():
            if step in silent:
                count[s] = 0
        has = count > 0
        spread = 0.05 * base
        mean = base + rng.normal(0.0, 1.0, N) * spread
        mean += np.where(rng.random(N) < 0.08, 12.0 * spread, 0.0)  # spikes
        lo = mean - rng.uniform(0.0, 1.0, N) * spread
        hi = mean + rng.uniform(0.0, 1.0, N) * spread
        stuck = rng.random(N) < 0.1
        lo, hi = np.where(stuck, mean, lo), np.where(stuck, mean, hi)
        std = np.where(stuck, 0.0, (hi - lo) / 4.0)
        last = lo + rng.uniform(0.0, 1.0, N) * (hi - lo)
        last_seen = np.where(has, end - rng.integers(1, WINDOW_MS, N), last_seen)
        oor = np.where(rng.random(N) < 0.05, rng.integers(1, 4, N), 0)
        out.append(
            Windows(
                sensor=np.arange(N, dtype=np.int64),
                kind=kind.copy(),
                machine_type=mtype.copy(),
                start_ms=np.full(N, start, np.int64),
                end_ms=np.full(N, end, np.int64),
                count=count.astype(np.int64),
                mean=_nan_where(~has, mean),
                std=_nan_where(~has, std),
                min=_nan_where(~has, lo),
                max=_nan_where(~has, hi),
                last=_nan_where(~has, last),
                last_seen_ms=last_seen.copy(),
                out_of_range=oor.astype(np.int64),
            )
        )
    return out


def bad_windows(end_ms: int) -> Windows:
    """Every sensor three times with data but NaN, +inf and -inf statistics, then rows without
    data: two sensors never seen (``last_seen_ms`` -1), two seen half a window ago (well within
    every detector's patience). A sensor repeats within the call, as it may after a restart.
    """
    sensors = [s for s in range(N) for _ in range(3)]
    stats = [np.nan, np.inf, -np.inf] * N
    stds = [np.nan, np.inf, 0.0] * N
    n_bad = len(sensors)
    sensors += [0, 1, 2, 3]
    n = len(sensors)
    stat = np.array(stats + [np.nan] * 4)
    seen = end_ms - WINDOW_MS // 2
    return Windows(
        sensor=np.array(sensors, np.int64),
        kind=np.array([SENSORS[s][1] for s in sensors], np.int8),
        machine_type=np.array([SENSORS[s][0] for s in sensors], dtype=object),
        start_ms=np.full(n, end_ms - WINDOW_MS, np.int64),
        end_ms=np.full(n, end_ms, np.int64),
        count=np.array([5] * n_bad + [0] * 4, np.int64),
        mean=stat.copy(),
        std=np.array(stds + [np.nan] * 4),
        min=stat.copy(),
        max=stat.copy(),
        last=stat.copy(),
        last_seen_ms=np.array([seen] * n_bad + [-1, -1, seen, seen], np.int64),
        out_of_range=np.zeros(n, np.int64),
    )


NO_DATA_ROWS = np.arange(3 * N, 3 * N + 4)


# -- checks -------------------------------------------------------------------------------------


@contextmanager
def strict() -> Iterator[None]:
    """Warnings (NumPy's ``invalid value`` included) become errors: "never raises" must hold."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def run(det: Detector, windows: list[Windows]) -> list[Finding]:
    with strict():
        return [det.evaluate(w) for w in windows]


def assert_same(a: list[Finding], b: list[Finding]) -> None:
    assert len(a) == len(b)
    for i, (fa, fb) in enumerate(zip(a, b, strict=True)):
        for field in ("level", "score", "value", "threshold"):
            np.testing.assert_array_equal(
                getattr(fa, field), getattr(fb, field), err_msg=f"window {i}, {field}"
            )


def assert_well_formed(w: Windows, f: Finding) -> None:
    n = len(w)
    for field in ("level", "score", "value", "threshold"):
        assert getattr(f, field).shape == (n,), field
    assert f.level.dtype == np.int8
    assert set(np.unique(f.level).tolist()) <= {0, 1, 2}
    raised = f.level > 0
    # a raised finding names the finite threshold it crossed; a clear row names none
    assert np.isfinite(f.threshold[raised]).all()
    assert np.isnan(f.threshold[~raised]).all()


@pytest.mark.parametrize("name", NAMES)
def test_the_stream_exercises_the_detector(name: str) -> None:
    """Guard for the checks below: on the stream each detector both raises and stays quiet."""
    levels = np.concatenate([f.level for f in run(make(name), stream(seed=1))])
    assert (levels > 0).any()
    assert (levels == 0).any()


@pytest.mark.parametrize("name", NAMES)
def test_seeded_determinism(name: str) -> None:
    a = run(make(name), stream(seed=7))
    b = run(make(name), stream(seed=7))
    assert_same(a, b)
    other = run(make(name), stream(seed=8))
    assert any(
        not np.array_equal(x.value, y.value, equal_nan=True) for x, y in zip(a, other, strict=True)
    )


@pytest.mark.parametrize("k", [1, 20])
@pytest.mark.parametrize("name", NAMES)
def test_pickle_round_trip_mid_stream(name: str, k: int) -> None:
    windows = stream(seed=3)
    det = make(name)
    run(det, windows[:k])
    clone = pickle.loads(pickle.dumps(det))
    assert type(clone) is type(det)
    assert clone.name == det.name
    assert_same(run(clone, stream(seed=3)[k:]), run(det, windows[k:]))


@pytest.mark.parametrize("name", NAMES)
def test_findings_are_well_formed_on_the_stream(name: str) -> None:
    windows = stream(seed=5)
    for w, f in zip(windows, run(make(name), windows), strict=True):
        assert_well_formed(w, f)


@pytest.mark.parametrize("warm", [0, 20])
@pytest.mark.parametrize("name", NAMES)
def test_bad_input_never_raises(name: str, warm: int) -> None:
    """NaN, ±inf, rows without data and empty input, on a fresh detector and a warm one."""
    det = make(name)
    windows = stream(seed=2)
    run(det, windows[:warm])
    end = (warm + 1) * WINDOW_MS
    bad = bad_windows(end)
    for w in (bad, Windows.empty(), bad_windows(end + WINDOW_MS)):
        (f,) = run(det, [w])
        assert_well_formed(w, f)
        if len(w):
            assert (f.level[NO_DATA_ROWS] == 0).all()
    # and it carries on afterwards
    for w, f in zip(windows[warm:], run(det, windows[warm:]), strict=True):
        assert_well_formed(w, f)


@pytest.mark.parametrize("name", NAMES)
def test_empty_input_gives_an_empty_finding(name: str) -> None:
    (f,) = run(make(name), [Windows.empty()])
    assert [len(f.level), len(f.score), len(f.value), len(f.threshold)] == [0, 0, 0, 0]


@pytest.mark.parametrize("name", NAMES)
def test_input_is_not_modified(name: str) -> None:
    windows = stream(seed=4)
    fields = [f.name for f in dataclasses.fields(Windows)]
    before = [{f: np.copy(getattr(w, f)) for f in fields} for w in windows]
    run(make(name), [*windows, bad_windows(len(windows) * WINDOW_MS)])
    for w, cols in zip(windows, before, strict=True):
        for field, col in cols.items():
            np.testing.assert_array_equal(getattr(w, field), col, err_msg=field)


# -- sequential scorers and fitted models ---------------------------------------------------------
#
# The same suite for the other two families ``plantwatch.detect`` exports (detect/base.py):
# *sequential* scorers (``update(x) -> scores``, state carried across calls: NAB, CUSUM) and
# *fitted models* (``fit``/``score``/``to_onnx``: what ``plantwatch train`` registers and the
# stream runs in onnxruntime). Discovered the same way; each needs a factory.

SEQUENTIAL_FACTORIES: dict[str, Callable[[], detect.Sequential]] = {
    "EwmaZ": detect.EwmaZ,
    "MedianZ": detect.MedianZ,
    "Cusum": detect.Cusum,
    "Likelihood": detect.Likelihood,
}
MODEL_FACTORIES: dict[str, Callable[[], detect.Model]] = {
    "PCAModel": detect.PCAModel,
    "CVAModel": detect.CVAModel,
    "IsolationForestModel": lambda: detect.IsolationForestModel(random_state=0),
}


def _discover_family(*methods: str) -> list[str]:
    return sorted(
        attr
        for attr in dir(detect)
        if not attr.startswith("_")
        and inspect.isclass(getattr(detect, attr))
        and isinstance(getattr(getattr(detect, attr), "name", None), str)
        and all(callable(getattr(getattr(detect, attr), m, None)) for m in methods)
    )


SEQUENTIAL = _discover_family("update")
MODELS = _discover_family("fit", "score", "to_onnx")


def test_every_sequential_scorer_and_model_has_a_factory() -> None:
    assert sorted(SEQUENTIAL_FACTORIES) == SEQUENTIAL, "SEQUENTIAL_FACTORIES out of date"
    assert sorted(MODEL_FACTORIES) == MODELS, "MODEL_FACTORIES out of date"
    assert set(SEQUENTIAL) & set(NAMES) == set()
    assert set(MODELS) & set(NAMES) == set()


def series(seed: int, n: int = 600, d: int = 2) -> F64:
    """Noise around a gentle cycle per column, a level shift (20 σ) in the last quarter."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None]
    x = 10.0 + 0.2 * np.sin(t / 40.0 + np.arange(d)) + rng.normal(0.0, 0.2, (n, d))
    x[3 * n // 4 :, 0] += 4.0
    return x


def _seq(name: str) -> detect.Sequential:
    factory = SEQUENTIAL_FACTORIES.get(name)
    if factory is None:
        pytest.fail(f"plantwatch.detect exports {name!r}: add it to SEQUENTIAL_FACTORIES")
    return factory()


@pytest.mark.parametrize("name", SEQUENTIAL)
def test_sequential_deterministic_and_chunking_invariant(name: str) -> None:
    x = series(1)
    with strict():
        whole = _seq(name).update(x)
        again = _seq(name).update(x)
        det = _seq(name)
        pieces = np.concatenate([det.update(x[a : a + 37]) for a in range(0, len(x), 37)])
        other = _seq(name).update(series(2))
    np.testing.assert_array_equal(whole, again)
    np.testing.assert_allclose(pieces, whole, rtol=1e-12, atol=1e-12)
    assert not np.array_equal(whole, other)
    assert whole.shape == (len(x),)
    assert np.isfinite(whole).all()
    assert (whole >= 0).all()


@pytest.mark.parametrize("name", SEQUENTIAL)
def test_sequential_scores_the_level_shift_higher(name: str) -> None:
    x = series(3)
    with strict():
        s = _seq(name).update(x)
    n = len(x)
    assert s[3 * n // 4 : 3 * n // 4 + 60].max() > np.quantile(s[n // 4 : 3 * n // 4], 0.99)


@pytest.mark.parametrize("name", SEQUENTIAL)
def test_sequential_pickle_mid_stream(name: str) -> None:
    x = series(4)
    det = _seq(name)
    with strict():
        det.update(x[:250])
        clone = pickle.loads(pickle.dumps(det))
        np.testing.assert_array_equal(clone.update(x[250:]), det.update(x[250:]))


@pytest.mark.parametrize("name", SEQUENTIAL)
def test_sequential_bad_rows_score_zero_and_leave_the_state(name: str) -> None:
    x = series(5)
    bad = np.array([[np.nan, 1.0], [np.inf, np.nan], [-np.inf, -np.inf]])
    with_bad = np.concatenate([x[:300], bad, x[300:]])
    before = with_bad.copy()
    with strict():
        clean = _seq(name).update(x)
        dirty = _seq(name).update(with_bad)
        empty = _seq(name).update(np.zeros((0, 2)))
    np.testing.assert_array_equal(with_bad, before)  # input untouched
    np.testing.assert_array_equal(dirty[300:303], 0.0)
    np.testing.assert_allclose(np.delete(dirty, [300, 301, 302]), clean, rtol=1e-12)
    assert empty.shape == (0,)


def _model(name: str) -> detect.Model:
    factory = MODEL_FACTORIES.get(name)
    if factory is None:
        pytest.fail(f"plantwatch.detect exports {name!r}: add it to MODEL_FACTORIES")
    return factory()


def table(seed: int, n: int = 400) -> F64:
    """Correlated normal rows (two latent factors over six columns)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 2))
    mix = np.array([[1.0, 0.5, 0.2, 0.0, 1.0, -0.3], [0.0, 0.4, 1.0, 1.0, -0.2, 0.5]])
    return 5.0 + z @ mix + rng.normal(0.0, 0.1, (n, 6))


@pytest.mark.parametrize("name", MODELS)
def test_model_seeded_determinism_and_pickle(name: str) -> None:
    train, test = table(1), table(2, 100)
    with strict():
        a = _model(name).fit(train)
        b = _model(name).fit(train)
        clone = pickle.loads(pickle.dumps(a))
        np.testing.assert_array_equal(a.score(test), b.score(test))
        np.testing.assert_array_equal(clone.score(test), a.score(test))
        assert not np.array_equal(_model(name).fit(table(3)).score(test), a.score(test))


@pytest.mark.parametrize("name", MODELS)
def test_model_scores_outliers_higher_and_in_range(name: str) -> None:
    train = table(1)
    test = table(2, 100)
    test[:5] += np.array([6.0, -6.0, 6.0, -6.0, 6.0, -6.0])  # far from the training cloud
    with strict():
        s = _model(name).fit(train).score(test)
    assert s.shape == (100,)
    assert np.isfinite(s).all()
    assert (s >= 0).all()
    assert s[:5].min() > s[5:].max()


@pytest.mark.parametrize("name", MODELS)
def test_model_bad_rows(name: str) -> None:
    """Rows with NaN or inf are left out of ``fit`` and score NaN; the others are unaffected."""
    train, test = table(1), table(2, 50)
    dirty_train = np.concatenate([train, [[np.nan] * 6, [np.inf] + [1.0] * 5]])
    dirty_test = test.copy()
    dirty_test[[3, 7], [0, 4]] = [np.nan, -np.inf]
    before = dirty_test.copy()
    with strict():
        m = _model(name).fit(dirty_train)
        s = m.score(dirty_test)
        ref = _model(name).fit(train).score(test)
        empty = m.score(np.zeros((0, 6)))
    np.testing.assert_array_equal(dirty_test, before)
    assert np.isnan(s[[3, 7]]).all()
    keep = np.setdiff1d(np.arange(50), [3, 7])
    np.testing.assert_allclose(s[keep], ref[keep], rtol=1e-9)
    assert empty.shape == (0,)


@pytest.mark.parametrize("name", MODELS)
def test_model_onnx_scores_like_the_model(name: str) -> None:
    """The ONNX graph the stream runs gives the model's own scores (float32 precision)."""
    from plantwatch.models.scoring import run_scores, session

    train, test = table(1), table(2, 100)
    test[:3] += 5.0
    with strict():
        m = _model(name).fit(train)
        expected = m.score(test)
    got = run_scores(session(m.to_onnx()), test)
    np.testing.assert_allclose(got, expected, rtol=2e-3, atol=2e-4)
