"""The model registry on a local folder: versions counting up, complete-only listing, resolve
with helpful errors, sha256 checked on load, promotion, and names and references."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from plantwatch.core.errors import PlantwatchError
from plantwatch.models.registry import (
    FORMAT_VERSION,
    ModelRef,
    Registry,
    RegistryError,
    check_name,
    parse_ref,
)

ONNX = b"\x08\x08fake onnx graph bytes"


def registry(tmp_path: Path) -> Registry:
    return Registry(str(tmp_path / "models"))


def test_register_counts_versions_up_and_writes_complete_metadata(tmp_path: Path) -> None:
    reg = registry(tmp_path)
    before = datetime.now(UTC) - timedelta(seconds=1)
    r1 = reg.register("pump", "pca", ONNX, {"algorithm": "pca", "threshold": {"warning": 2.0}})
    r2 = reg.register("pump", "pca", ONNX + b"2", {"algorithm": "pca"})
    other = reg.register("pump", "iforest", ONNX, {"algorithm": "iforest"})
    fan = reg.register("fan", "pca", ONNX, {"algorithm": "pca"})
    assert r1 == ModelRef("pump", "pca", 1) and r2 == ModelRef("pump", "pca", 2)
    assert other.version == 1 and fan.version == 1  # per (type, name)
    assert str(r2) == "pump/pca/v2" and r2.folder == "pump/pca/v0002"
    assert (tmp_path / "models" / "pump" / "pca" / "v0002" / "model.onnx").read_bytes() == (
        ONNX + b"2"
    )

    meta = reg.metadata(r1)
    assert meta["model_sha256"] == hashlib.sha256(ONNX).hexdigest()
    assert meta["format_version"] == FORMAT_VERSION
    assert (meta["machine_type"], meta["name"], meta["version"]) == ("pump", "pca", 1)
    assert meta["algorithm"] == "pca" and meta["threshold"] == {"warning": 2.0}
    at = datetime.fromisoformat(meta["registered_at"].replace("Z", "+00:00"))
    assert before <= at <= datetime.now(UTC) + timedelta(seconds=1)
    assert reg.metadata(r2)["model_sha256"] == hashlib.sha256(ONNX + b"2").hexdigest()

    assert reg.versions() == [
        ModelRef("fan", "pca", 1),
        ModelRef("pump", "iforest", 1),
        ModelRef("pump", "pca", 1),
        ModelRef("pump", "pca", 2),
    ]
    assert reg.versions("fan") == [ModelRef("fan", "pca", 1)]
    assert reg.versions("compressor") == []


def test_registration_metadata_cannot_override_the_registry_fields(tmp_path: Path) -> None:
    reg = registry(tmp_path)
    ref = reg.register("pump", "pca", ONNX, {"version": 99, "model_sha256": "0" * 64})
    meta = reg.metadata(ref)
    assert meta["version"] == 1
    assert meta["model_sha256"] == hashlib.sha256(ONNX).hexdigest()
    assert reg.load(ref).onnx == ONNX


def test_resolve_latest_explicit_and_helpful_errors(tmp_path: Path) -> None:
    reg = registry(tmp_path)
    with pytest.raises(RegistryError, match="none"):
        reg.resolve("pump", "pca", None)
    for _ in range(3):
        reg.register("pump", "pca", ONNX, {})
    reg.register("fan", "iforest", ONNX, {})
    assert reg.resolve("pump", "pca", None) == ModelRef("pump", "pca", 3)
    assert reg.resolve("pump", "pca", 2) == ModelRef("pump", "pca", 2)
    with pytest.raises(RegistryError) as unknown:
        reg.resolve("pump", "lstm", None)
    assert "pump/lstm" in str(unknown.value)
    assert "fan/iforest" in str(unknown.value) and "pump/pca" in str(unknown.value)
    with pytest.raises(RegistryError) as no_version:
        reg.resolve("pump", "pca", 7)
    assert "v7" in str(no_version.value) and "v1, v2, v3" in str(no_version.value)
    assert isinstance(no_version.value, PlantwatchError)  # the CLI reports it, exit 2


def test_an_interrupted_registration_is_not_listed_and_its_number_not_reused(
    tmp_path: Path,
) -> None:
    reg = registry(tmp_path)
    reg.register("pump", "pca", ONNX, {})
    crashed = tmp_path / "models" / "pump" / "pca" / "v0002"
    crashed.mkdir()
    (crashed / "model.onnx").write_bytes(ONNX)  # the model written, the metadata never was
    assert reg.versions() == [ModelRef("pump", "pca", 1)]
    assert reg.resolve("pump", "pca", None).version == 1
    with pytest.raises(RegistryError, match="v1"):
        reg.resolve("pump", "pca", 2)
    nxt = reg.register("pump", "pca", ONNX + b"new", {})
    assert nxt.version == 3
    assert (crashed / "model.onnx").read_bytes() == ONNX  # never overwritten
    assert reg.versions() == [ModelRef("pump", "pca", 1), ModelRef("pump", "pca", 3)]
    with pytest.raises(RegistryError):
        reg.promote(ModelRef("pump", "pca", 2))  # incomplete: cannot be promoted


def test_load_checks_the_model_against_its_metadata(tmp_path: Path) -> None:
    reg = registry(tmp_path)
    ref = reg.register("pump", "pca", ONNX, {"algorithm": "pca"})
    loaded = reg.load(ref)
    assert loaded.ref == ref and loaded.onnx == ONNX
    assert loaded.metadata["algorithm"] == "pca"
    (tmp_path / "models" / ref.folder / "model.onnx").write_bytes(ONNX + b"tampered")
    with pytest.raises(RegistryError, match="sha256") as err:
        reg.load(ref)
    assert hashlib.sha256(ONNX + b"tampered").hexdigest() in str(err.value)
    assert str(ref) in str(err.value)


def test_promote_and_promoted(tmp_path: Path) -> None:
    reg = registry(tmp_path)
    assert reg.promoted("pump") is None and reg.promoted_all() == {}
    r1 = reg.register("pump", "pca", ONNX, {})
    r2 = reg.register("pump", "pca", ONNX, {})
    f1 = reg.register("fan", "iforest", ONNX, {})
    record = reg.promote(r1)
    assert (record["name"], record["version"]) == ("pca", 1)
    assert "@" in record["by"] and record["promoted_at"].endswith("Z")
    assert reg.promoted("pump") == r1
    stored = json.loads((tmp_path / "models" / "pump" / "promoted.json").read_text())
    assert stored == record
    reg.promote(r2)
    assert reg.promoted("pump") == r2  # a later promotion replaces the earlier one
    assert reg.promoted_all() == {"pump": r2}
    reg.promote(f1)
    assert reg.promoted_all() == {"pump": r2, "fan": f1}
    assert reg.promoted("compressor") is None
    with pytest.raises(RegistryError):
        reg.promote(ModelRef("pump", "pca", 9))
    assert reg.promoted("pump") == r2  # a failed promotion changes nothing


def test_a_second_registry_on_the_same_folder_sees_everything(tmp_path: Path) -> None:
    a = registry(tmp_path)
    ref = a.register("pump", "pca", ONNX, {})
    a.promote(ref)
    b = registry(tmp_path)
    assert b.versions() == [ref] and b.promoted("pump") == ref
    assert b.load(ref).onnx == ONNX


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pump/pca", ("pump", "pca", None)),
        ("pump/pca/v3", ("pump", "pca", 3)),
        ("pump/pca/3", ("pump", "pca", 3)),
        ("pump/pca/v0003", ("pump", "pca", 3)),
        ("/centrifugal_pump/pca-2.b/", ("centrifugal_pump", "pca-2.b", None)),
    ],
)
def test_parse_ref(text: str, expected: tuple[str, str, int | None]) -> None:
    assert parse_ref(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("pump", "TYPE/NAME"),
        ("pump/pca/v1/extra", "TYPE/NAME"),
        ("pump/pca/latest", "vN"),
        ("pump/pca/v", "vN"),
        ("pump/../v1", "registry name"),
        ("pump/p ca", "registry name"),
        ("-pump/pca", "registry name"),
    ],
)
def test_parse_ref_errors(text: str, message: str) -> None:
    with pytest.raises(RegistryError, match=message):
        parse_ref(text)


@pytest.mark.parametrize("bad", ["", ".", "..", ".hidden", "a/b", "a b", "pümp", "-x", "a\\b"])
def test_invalid_names_are_rejected(tmp_path: Path, bad: str) -> None:
    with pytest.raises(RegistryError, match="registry name"):
        check_name("model name", bad)
    reg = registry(tmp_path)
    with pytest.raises(RegistryError):
        reg.register("pump", bad, ONNX, {})
    with pytest.raises(RegistryError):
        reg.register(bad, "pca", ONNX, {})
    assert reg.versions() == []


def test_a_trailing_newline_is_not_a_valid_name() -> None:
    try:
        accepted = check_name("model name", "pca\n")
    except RegistryError:
        return
    pytest.fail(
        f"BUG check_name: {accepted!r} is accepted because the pattern ends in '$' (which "
        "matches before a final newline) and is used with .match: use fullmatch or \\Z"
    )
