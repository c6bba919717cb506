"""``plantwatch evaluate``: every evaluator is reachable from the command line, prints its table
and writes its figures with ``--json``; a missing dataset is a clear error, not a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from plantwatch.cli import main
from plantwatch.evaluate.cli import EVALUATORS
from plantwatch.evaluate.report import Report

pytestmark = pytest.mark.usefixtures("root_restored")  # main() installs log handlers


@pytest.fixture(autouse=True)
def _logs_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANTWATCH_LOG__ENABLED", "false")
    monkeypatch.chdir(tmp_path)


def test_every_evaluator_has_a_sub_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in ("nab", "tep", "cmapss", "sim", "csv"):
        assert name in EVALUATORS
        assert name in out


@pytest.mark.parametrize(
    ("name", "folder"), [("nab", "NAB"), ("tep", "TEP"), ("cmapss", "CMAPSS_FD001")]
)
def test_a_missing_dataset_names_where_it_looked(
    name: str, folder: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["evaluate", name, "--datasets", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"dataset {folder!r} not found at {tmp_path / 'nowhere' / folder}" in err
    assert "--datasets" in err


def test_csv_evaluation_prints_the_table_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(0)

    def run_file(path: Path, n: int, anomaly: tuple[int, int] | None) -> None:
        z = rng.normal(size=(n, 1))
        x = np.hstack([z, 2 * z, -z]) + rng.normal(0, 0.05, (n, 3))
        label = np.zeros(n, int)
        if anomaly:
            a, b = anomaly
            x[a:b, 1] += 3.0  # breaks the correlation
            label[a:b] = 1
        lines = ["t;a;b;c;label"] + [
            f"{i};{x[i, 0]:.5f};{x[i, 1]:.5f};{x[i, 2]:.5f};{label[i]}" for i in range(n)
        ]
        path.write_text("\n".join(lines) + "\n")

    run_file(tmp_path / "train-1.csv", 400, None)
    run_file(tmp_path / "test-1.csv", 200, (120, 160))
    out_json = tmp_path / "out" / "csv.json"
    rc = main(
        [
            "evaluate", "csv", "--train", str(tmp_path / "train-*.csv"),
            "--test", str(tmp_path / "test-*.csv"), "--time-column", "t",
            "--label-column", "label", "--json", str(out_json),
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0
    assert "test-1.csv" in out
    figures = json.loads(out_json.read_text())
    assert figures["table"]["columns"]
    summary = figures["summary"]
    # the broken correlation is found: most of the segment flagged, little outside it
    assert summary["recall"] > 0.8
    assert summary["false alarm rate"] < 0.05
    assert summary["mean detection delay"] < 10  # rows of the time column


def test_report_renders_sections_and_plain_json(tmp_path: Path) -> None:
    inner = Report("inner", ["a"], [[1.5]], summary={"x": np.float64(2.0)})
    r = Report(
        "outer", ["name", "value"], [["n", float("nan")]], summary={"k": 3}, sections=[inner]
    )
    text = r.render()
    assert text.index("outer") < text.index("inner")
    assert "—" in text  # NaN shows as a dash
    path = tmp_path / "r.json"
    r.write_json(path)
    data = json.loads(path.read_text())
    assert data["table"]["rows"] == [["n", None]]
    assert data["sections"][0]["summary"] == {"x": 2.0}
