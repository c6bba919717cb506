"""``plantwatch models list|show|promote`` through the real command line, on a folder registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plantwatch.cli import main
from plantwatch.models.registry import ModelRef, Registry

ONNX = b"not really onnx: the CLI never runs it"


# ``main`` installs the console and JSON log handlers on the root logger: remove them after
pytestmark = pytest.mark.usefixtures("root_restored")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "models"


def models(folder: Path, *argv: str) -> int:
    """``plantwatch models ARGV --registry FOLDER`` (logs under the test's own folder)."""
    return main(["models", *argv, "--registry", str(folder), "--data-dir", str(folder.parent)])


def filled(folder: Path) -> Registry:
    reg = Registry(str(folder))
    for n, warning in ((1200, 1.5), (3400, 1.7)):
        reg.register(
            "pump",
            "pca",
            ONNX,
            {"algorithm": "pca", "training": {"windows": n}, "threshold": {"warning": warning}},
        )
    reg.register("fan", "iforest", ONNX, {"algorithm": "iforest"})
    reg.promote(ModelRef("pump", "pca", 1))
    return reg


def test_list_of_an_empty_registry_says_how_to_get_a_model(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert models(folder, "list") == 0
    out = capsys.readouterr().out
    assert f"no models in {folder}" in out and "plantwatch train" in out
    assert models(folder, "list", "--json") == 0
    assert json.loads(capsys.readouterr().out) == []


def test_list_marks_the_promoted_version(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    filled(folder)
    assert models(folder, "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["model", "algorithm", "registered", "windows", "promoted"]
    by_model = {line.split()[0]: line for line in lines[1:]}
    assert list(by_model) == ["fan/iforest/v1", "pump/pca/v1", "pump/pca/v2"]
    assert by_model["pump/pca/v1"].rstrip().endswith("*")
    assert not by_model["pump/pca/v2"].rstrip().endswith("*")
    assert not by_model["fan/iforest/v1"].rstrip().endswith("*")
    assert "3,400" in by_model["pump/pca/v2"] and "iforest" in by_model["fan/iforest/v1"]


def test_list_json_and_machine_type_filter(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = filled(folder)
    assert models(folder, "list", "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["model"], r["promoted"]) for r in rows] == [
        ("fan/iforest/v1", False),
        ("pump/pca/v1", True),
        ("pump/pca/v2", False),
    ]
    v2 = rows[2]
    assert (v2["algorithm"], v2["windows"], v2["warning"]) == ("pca", 3400, 1.7)
    assert v2["registered_at"] == reg.metadata(ModelRef("pump", "pca", 2))["registered_at"]
    assert rows[0]["windows"] is None and rows[0]["warning"] is None
    assert models(folder, "list", "--json", "--machine-type", "fan") == 0
    assert [r["model"] for r in json.loads(capsys.readouterr().out)] == ["fan/iforest/v1"]


def test_show_prints_the_metadata_and_whether_it_is_promoted(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = filled(folder)
    assert models(folder, "show", "pump/pca") == 0  # the latest
    latest = json.loads(capsys.readouterr().out)
    assert latest == {**reg.metadata(ModelRef("pump", "pca", 2)), "promoted": False}
    assert models(folder, "show", "pump/pca/v1") == 0
    v1 = json.loads(capsys.readouterr().out)
    assert (v1["version"], v1["promoted"], v1["training"]) == (1, True, {"windows": 1200})
    assert "model_sha256" in v1 and "registered_at" in v1


def test_promote_latest_and_explicit_version(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = filled(folder)
    assert models(folder, "promote", "pump/pca") == 0
    out = capsys.readouterr().out
    assert out.startswith("pump/pca/v2 promoted for pump at ")
    assert reg.promoted("pump") == ModelRef("pump", "pca", 2)
    assert models(folder, "promote", "pump/pca/v1") == 0
    assert capsys.readouterr().out.startswith("pump/pca/v1 promoted for pump")
    assert reg.promoted("pump") == ModelRef("pump", "pca", 1)
    assert models(folder, "promote", "fan/iforest/v1") == 0
    capsys.readouterr()
    assert reg.promoted_all() == {
        "pump": ModelRef("pump", "pca", 1),
        "fan": ModelRef("fan", "iforest", 1),
    }


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("show", "pump/lstm"), "no model pump/lstm"),
        (("promote", "compressor/pca"), "models there: fan/iforest, pump/pca"),
        (("promote", "pump/pca/v9"), "versions: v1, v2"),
        (("show", "pump"), "TYPE/NAME"),
        (("promote", "pump/pca/latest"), "vN"),
    ],
)
def test_unknown_models_exit_2_with_a_message(
    folder: Path, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str
) -> None:
    reg = filled(folder)
    assert models(folder, *argv) == 2
    captured = capsys.readouterr()
    assert "plantwatch: error:" in captured.err and message in captured.err
    assert captured.out == ""
    assert reg.promoted("pump") == ModelRef("pump", "pca", 1)  # nothing changed
