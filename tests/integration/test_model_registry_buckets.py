"""The model registry in a bucket: gcp-storage-emulator (gs://) and moto_server (s3://).

The registry is configured as a user would: a URL and the environment the archive reads
(``PLANTWATCH_ARCHIVE_ENDPOINT_URL``, AWS keys). A model is registered, promoted, listed through
the CLI, and loaded and run by the stream's scorer from the bucket.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pytest

from plantwatch.cli import main
from plantwatch.detect import PCAModel
from plantwatch.models.features import FeatureSpec
from plantwatch.models.registry import Registry, RegistryError
from plantwatch.models.scoring import ModelScorer
from plantwatch.stream.outputs import FEATURES_SCHEMA

from object_store_support import StoreTarget

pytestmark = pytest.mark.usefixtures("root_restored")

SENSORS = ("a", "b", "c")


@pytest.fixture(params=["gs", "s3"])
def registry_url(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    target: StoreTarget = request.getfixturevalue(
        {"gs": "gcs_archive_url", "s3": "s3_archive_url"}[request.param]
    )
    monkeypatch.setenv("PLANTWATCH_ARCHIVE_ENDPOINT_URL", target.store.endpoint)
    monkeypatch.setenv("PLANTWATCH_LOG__ENABLED", "false")
    if target.store.scheme == "s3":
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return target.url.replace("/archive", "/models")


def _model() -> tuple[bytes, dict]:
    rng = np.random.default_rng(0)
    load = rng.normal(size=(500, 1))
    x = 10 + np.hstack([load, 2 * load, -load]) + rng.normal(0, 0.05, (500, 3))
    spec = FeatureSpec("pump", SENSORS, ("vibration",) * 3, ("mean",), 10.0).with_moments(x)
    model = PCAModel().fit(x)
    return model.to_onnx(), {
        "algorithm": "pca",
        "features": spec.as_json(),
        "threshold": {"warning": 1.5, "critical": 3.0, "method": "test"},
    }


def _window(values: tuple[float, float, float]) -> pa.Table:
    end = 1_767_225_610_000
    n = len(SENSORS)
    return pa.Table.from_pydict(
        {
            "machine_id": ["P-1"] * n,
            "sensor_id": list(SENSORS),
            "kind": ["vibration"] * n,
            "window_start": pa.array([end - 10_000] * n, pa.int64()).cast(
                pa.timestamp("ms", "UTC")
            ),
            "window_end": pa.array([end] * n, pa.int64()).cast(pa.timestamp("ms", "UTC")),
            "count": pa.array([10] * n, pa.uint32()),
            "mean": list(values),
            "min": list(values),
            "max": list(values),
            "std": [0.1] * n,
            "last": list(values),
            "rms": pa.nulls(n, pa.float64()),
            "version": pa.array([0] * n, pa.uint32()),
            "computed_at": pa.array([end] * n, pa.int64()).cast(pa.timestamp("ms", "UTC")),
        },
        schema=FEATURES_SCHEMA,
    )


def test_register_promote_list_and_score_from_a_bucket(
    registry_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    onnx, meta = _model()
    registry = Registry(registry_url)
    assert registry.versions() == []
    ref = registry.register("pump", "pca", onnx, meta)
    assert str(ref) == "pump/pca/v1"
    assert registry.metadata(ref)["model_sha256"] == hashlib.sha256(onnx).hexdigest()

    assert main(["models", "promote", "pump/pca", "--registry", registry_url]) == 0
    assert main(["models", "list", "--registry", registry_url]) == 0
    out = capsys.readouterr().out
    assert "pump/pca/v1 promoted for pump" in out
    assert "pump/pca/v1" in out.splitlines()[-1]
    assert out.splitlines()[-1].rstrip().endswith("*")

    scorer = ModelScorer(registry_url)
    types = np.array(["pump"] * 3, dtype=object)
    normal = scorer.score(_window((10.0, 10.0, 10.0)), types, now_ms=0)
    broken = scorer.score(_window((10.0, 16.0, 10.0)), types, now_ms=0)  # b leaves the load
    assert scorer.active() == {"pump": ref}
    assert normal.num_rows == 0
    assert broken.column("model_version").to_pylist() == ["pump/pca/v1"]
    assert broken.column("sensor_id").to_pylist() == ["b"]


def test_a_tampered_model_in_the_bucket_is_refused(registry_url: str) -> None:
    onnx, meta = _model()
    registry = Registry(registry_url)
    ref = registry.register("pump", "pca", onnx, meta)
    registry.store.put_bytes(f"{ref.folder}/model.onnx", onnx[:-8] + b"tampered")
    with pytest.raises(RegistryError, match="does not match its metadata"):
        registry.load(ref)
