"""CSV evaluator: delimiter detection, point-wise metrics and detection delay on hand-checked
cases, an end-to-end run on synthetic CSV runs, and the error messages."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from plantwatch.core.errors import ConfigError
from plantwatch.evaluate import csvrun


def test_count_and_metrics_hand_checked() -> None:
    #            0  1  2  3  4  5  6  7  8  9
    label = np.array([0, 0, 1, 1, 1, 0, 0, 1, 1, 0], bool)
    alarm = np.array([1, 0, 0, 1, 1, 0, 0, 0, 0, 1], bool)
    time = np.arange(10) * 2.0
    c = csvrun.count(alarm, label, time)
    assert (c.tp, c.fp, c.fn, c.tn) == (2, 2, 3, 3)
    assert (c.segments, c.detected) == (2, 1)
    m = c.metrics()
    assert m["precision"] == pytest.approx(2 / 4)
    assert m["recall"] == pytest.approx(2 / 5)
    assert m["f1"] == pytest.approx(2 * 0.5 * 0.4 / 0.9)
    assert m["false_alarm_rate"] == pytest.approx(2 / 5)
    assert m["missed_alarm_rate"] == pytest.approx(3 / 5)
    assert m["mean_delay"] == pytest.approx(2.0)  # segment 2..4 first alarms at row 3: 6 - 4


def test_segments_are_maximal_runs() -> None:
    assert csvrun.segments(np.array([1, 1, 0, 1, 0, 0, 1], bool)) == [(0, 2), (3, 4), (6, 7)]
    assert csvrun.segments(np.zeros(4, bool)) == []


def test_no_alarm_no_anomaly_gives_nan_not_an_error() -> None:
    m = csvrun.count(np.zeros(3, bool), np.zeros(3, bool), np.arange(3.0)).metrics()
    assert np.isnan(m["precision"])
    assert np.isnan(m["mean_delay"])
    assert m["false_alarm_rate"] == 0.0


@pytest.mark.parametrize(
    ("lines", "sep"),
    [
        (["t;a;b;label\n", "1;0,5;2,5;0\n"], ";"),  # decimal commas do not fool it
        (["t,a,b,label\n", "1,0.5,2.5,0\n"], ","),
        (["t\ta\tb\n", "1\t2\t3\n"], "\t"),
        (["t|a|b\n", "1|2|3\n"], "|"),
    ],
)
def test_detect_separator(lines: list[str], sep: str) -> None:
    assert csvrun.detect_separator(lines) == sep


def test_detect_separator_ambiguous_or_none_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"ambiguous.*pass --sep"):
        csvrun.detect_separator(["t,a;b\n", "1,2;3\n"])
    with pytest.raises(ConfigError, match=r"none of.*pass --sep"):
        csvrun.detect_separator(["value\n", "1\n"])


# ------------------------------------------------------------------------------- end to end

MIX = np.array([[1.0, 0.6, -0.7, 0.4], [0.3, -0.9, 0.5, 1.0]])


def _run(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 2)) @ MIX + 0.05 * rng.normal(size=(n, 4))


def _write(path: Path, x: np.ndarray, label: np.ndarray, sep: str, extra: str = "") -> None:
    head = sep.join(["time", "f1", "f2", "f3", "f4", "label"]) + (sep + "note" if extra else "")
    lines = [head]
    for i, (row, y) in enumerate(zip(x, label, strict=True)):
        cells = [str(10 * i), *(f"{v:.6f}" for v in row), str(int(y))]
        lines.append(sep.join(cells + ([extra] if extra else [])))
    path.write_text("\n".join(lines) + "\n")


def _args(tmp: Path, **over: object) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    csvrun.configure(p)
    args = p.parse_args(
        [
            "--train",
            str(tmp / "train_*.csv"),
            "--test",
            str(tmp / "test_*.csv"),
            "--time-column",
            "time",
            "--label-column",
            "label",
        ]
    )
    for k, v in over.items():
        setattr(args, k, v)
    return args


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    # training: two runs, ';' and ',' separated; the labelled rows of the second are garbage
    # that must not be learnt as normal
    _write(tmp_path / "train_a.csv", _run(600, 1), np.zeros(600), ";")
    x = _run(600, 2)
    lab = np.zeros(600)
    lab[100:150] = 1
    x[100:150] = 50.0
    _write(tmp_path / "train_b.csv", x, lab, ",")
    # test: segment A (rows 200..219) broken from its first row; segment B (rows 400..419)
    # labelled 3 rows before the fault shows; segment C (rows 600..609) shows nothing
    x = _run(700, 3)
    lab = np.zeros(700)
    lab[200:220] = lab[400:420] = lab[600:610] = 1
    x[200:220, 0] += 3.0
    x[403:420, 1] -= 3.0
    _write(tmp_path / "test_1.csv", x, lab, ";")
    return tmp_path


def test_end_to_end_metrics_and_delay(runs: Path) -> None:
    report = csvrun.run(_args(runs))
    assert [r[0] for r in report.rows] == ["test_1.csv", "total"]
    f = report.details["files"][str(runs / "test_1.csv")]
    assert (f["segments"], f["detected"]) == (3, 2)
    # delays: A at its first row (0 s), B 3 rows = 30 s after its labelled start
    assert f["mean_delay"] == pytest.approx(15.0)
    # 37 of the 50 anomalous rows carry a visible fault, all caught
    assert f["recall"] == pytest.approx(37 / 50)
    assert f["missed_alarm_rate"] == pytest.approx(13 / 50)
    assert f["false_alarm_rate"] < 0.03
    assert report.summary["F1"] == pytest.approx(f["f1"])
    assert report.details["features"] == ["f1", "f2", "f3", "f4"]


def test_errors_name_the_problem(runs: Path) -> None:
    with pytest.raises(ConfigError, match=r"--test .*no file matches"):
        csvrun.run(_args(runs, test=str(runs / "nothing_*.csv")))
    with pytest.raises(ConfigError, match=r"'when' not found"):
        csvrun.run(_args(runs, time_column="when"))
    bad = runs / "bad"
    bad.mkdir()
    _write(bad / "train_x.csv", _run(50, 4), np.ones(50), ",")
    with pytest.raises(ConfigError, match="no anomaly-free training rows"):
        csvrun.run(_args(runs, train=str(bad / "train_*.csv")))


def test_non_numeric_column_error_and_exclusion(tmp_path: Path) -> None:
    _write(tmp_path / "train_a.csv", _run(300, 5), np.zeros(300), ",", extra="ok")
    lab = np.zeros(300)
    lab[150:170] = 1
    x = _run(300, 6)
    x[150:170, 2] += 3.0
    _write(tmp_path / "test_a.csv", x, lab, ",", extra="ok")
    with pytest.raises(ConfigError, match=r"'note' are not numeric.*--exclude"):
        csvrun.run(_args(tmp_path))
    report = csvrun.run(_args(tmp_path, exclude="note"))
    assert report.details["features"] == ["f1", "f2", "f3", "f4"]
    assert report.details["files"][str(tmp_path / "test_a.csv")]["detected"] == 1
