"""TEP evaluator: the FDR/FAR scorer on hand-checked arrays, the reader on synthetic files in
the Braatz layout (including the transposed ``d00.dat``), and a small end-to-end run."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from plantwatch.core.errors import ConfigError
from plantwatch.evaluate import tep


def test_detection_rates_hand_checked() -> None:
    alarm = np.zeros(10, bool)
    alarm[[1, 6, 7, 9]] = True
    fdr, far = tep.detection_rates(alarm, start=5)
    assert fdr == pytest.approx(3 / 5)  # rows 5..9: 6, 7, 9 alarm
    assert far == pytest.approx(1 / 5)  # rows 0..4: 1 alarms


def test_detection_rates_default_start_is_row_160() -> None:
    alarm = np.zeros(960, bool)
    alarm[160:560] = True
    alarm[:16] = True
    assert tep.detection_rates(alarm) == (pytest.approx(0.5), pytest.approx(0.1))


def test_summarize_leaves_out_3_9_15_in_the_second_mean() -> None:
    fdr = dict.fromkeys(tep.FAULTS, 1.0)
    for k in (3, 9, 15):
        fdr[k] = 0.0
    mean21, mean18 = tep.summarize(fdr)
    assert mean21 == pytest.approx(18 / 21)
    assert mean18 == pytest.approx(1.0)


def test_moving_average_is_causal_and_shorter_at_the_start() -> None:
    out = tep.moving_average(np.array([3.0, 1.0, 2.0, 6.0]), 2)
    np.testing.assert_allclose(out, [3.0, 2.0, 1.5, 4.0])
    np.testing.assert_array_equal(tep.moving_average(np.array([1.0, 5.0]), 1), [1.0, 5.0])


def _write(path: Path, a: np.ndarray) -> None:
    np.savetxt(path, a, fmt="%.7e", delimiter="   ")


def test_reader_turns_the_transposed_training_file_round(tmp_path: Path) -> None:
    a = np.arange(52 * 7, dtype=float).reshape(7, 52)
    _write(tmp_path / "d00.dat", a.T)  # stored 52 x 7, like the Braatz d00.dat
    _write(tmp_path / "d00_te.dat", a)
    np.testing.assert_array_equal(tep.read_matrix(tmp_path / "d00.dat"), a)
    np.testing.assert_array_equal(tep.read_matrix(tmp_path / "d00_te.dat"), a)


def test_reader_rejects_a_wrong_width_and_a_missing_file(tmp_path: Path) -> None:
    _write(tmp_path / "bad.dat", np.zeros((5, 7)))
    with pytest.raises(ConfigError, match="52 variables"):
        tep.read_matrix(tmp_path / "bad.dat")
    with pytest.raises(ConfigError, match="not found"):
        tep.read_matrix(tmp_path / "d00.dat")


def _synthetic_tep(root: Path, seed: int = 0) -> Path:
    """A TEP-like folder: 52 correlated variables (8 latent factors), d00.dat transposed;
    faults 1-21 add a step of 2 standard deviations to one variable from row 160, except
    faults 3, 9 and 15, which change nothing (like the real undetectable ones)."""
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(8, 52))

    def normal(n: int) -> np.ndarray:
        return rng.normal(size=(n, 8)) @ mix + 0.3 * rng.normal(size=(n, 52))

    folder = root / "TEP"
    folder.mkdir()
    train = normal(500)
    std = train.std(axis=0)
    _write(folder / "d00.dat", train.T)
    _write(folder / "d00_te.dat", normal(400))
    for k in tep.FAULTS:
        x = normal(400)
        if k not in tep.UNDETECTABLE:
            x[160:, k] += 2 * std[k]  # off the normal correlations: an SPE fault
        _write(folder / f"d{k:02d}_te.dat", x)
    return root


def _args(root: Path, **over: object) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--datasets", type=Path, default=None)
    tep.configure(p)
    args = p.parse_args(["--datasets", str(root)])
    for k, v in over.items():
        setattr(args, k, v)
    return args


def test_run_on_synthetic_data_detects_the_steps_and_keeps_false_alarms_low(
    tmp_path: Path,
) -> None:
    root = _synthetic_tep(tmp_path)
    report = tep.run(_args(root, model="pca", lags=1, components=16, smooth=5))
    fdr = report.details["fdr"]
    assert set(fdr) == set(tep.FAULTS)
    assert all(fdr[k] > 0.95 for k in tep.FAULTS if k not in tep.UNDETECTABLE)
    assert all(fdr[k] < 0.1 for k in tep.UNDETECTABLE)
    assert report.summary["FAR on d00_te"] < 0.05
    assert report.summary["mean FDR (without 3, 9, 15)"] == pytest.approx(
        np.mean([fdr[k] for k in tep.FAULTS if k not in tep.UNDETECTABLE])
    )
    assert len(report.rows) == 21
    assert report.rows[0][0] == 1
    report.as_json()  # JSON-safe


def test_run_says_where_the_dataset_was_looked_for(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="TEP"):
        tep.run(_args(tmp_path))


def test_default_cva_chooses_its_settings_on_d00_and_detects_the_steps(tmp_path: Path) -> None:
    root = _synthetic_tep(tmp_path)
    report = tep.run(_args(root, max_lags=2))
    settings, selection = report.details["settings"], report.details["selection (d00.dat only)"]
    assert settings["model"] == "cva"
    assert settings["smooth"] == 1
    errors = selection["one-step error by lags (d00.dat, held out)"]
    assert set(errors) == {0, 1, 2}
    assert settings["lags"] == min(errors, key=errors.__getitem__)
    assert report.details["cva_states"] >= 1
    fdr = report.details["fdr"]
    assert all(fdr[k] > 0.95 for k in tep.FAULTS if k not in tep.UNDETECTABLE)
    assert all(fdr[k] < 0.1 for k in tep.UNDETECTABLE)
    assert report.summary["FAR on d00_te"] < 0.05
    assert tep.SENSITIVITY_LABEL not in report.details
    assert report.sections == []


def test_settings_and_threshold_do_not_depend_on_the_test_files(tmp_path: Path) -> None:
    """Honest selection: rewriting every test file leaves the chosen lags, state order and
    threshold exactly as they were; only the rates change."""
    root = _synthetic_tep(tmp_path)
    a = tep.run(_args(root, max_lags=1))
    folder = root / "TEP"
    for k in (0, *tep.FAULTS):
        x = np.loadtxt(folder / f"d{k:02d}_te.dat")
        _write(folder / f"d{k:02d}_te.dat", x + 3.0 * (np.arange(len(x)) >= 100)[:, None])
    b = tep.run(_args(root, max_lags=1))
    assert b.details["settings"] == a.details["settings"]
    assert b.details["selection (d00.dat only)"] == a.details["selection (d00.dat only)"]
    assert b.summary["threshold"] == a.summary["threshold"]
    assert b.details["fdr"] != a.details["fdr"]


def test_sensitivity_grid_is_labelled_and_separate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tep, "SENSITIVITY_LAGS", (0, 1))  # a smaller grid: a faster test
    root = _synthetic_tep(tmp_path)
    report = tep.run(_args(root, model="pca", lags=1, sensitivity=True))
    grid = report.details[tep.SENSITIVITY_LABEL]
    assert len(grid) == len(tep.SENSITIVITY_LAGS) * len(tep.SENSITIVITY_SMOOTH)
    assert {(g["lags"], g["smooth"]) for g in grid} == {
        (lag, w) for lag in tep.SENSITIVITY_LAGS for w in tep.SENSITIVITY_SMOOTH
    }
    (section,) = report.sections
    assert "not used to choose" in section.title
    # the headline stays the given setting, whatever the grid says
    assert report.details["settings"]["lags"] == 1
    row = next(g for g in grid if g["lags"] == 1 and g["smooth"] == 1)
    assert row["mean FDR (21)"] == pytest.approx(report.summary["mean FDR (21 faults)"])
    report.as_json()


def test_run_rejects_bad_settings(tmp_path: Path) -> None:
    root = _synthetic_tep(tmp_path)
    with pytest.raises(ConfigError, match="--smooth"):
        tep.run(_args(root, smooth=0))
    with pytest.raises(ConfigError, match="--lags"):
        tep.run(_args(root, lags=-1))
