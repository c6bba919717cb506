"""The stream stage as a Flink job on a MiniCluster, against the session's Kafka broker.

``plantwatch flink run --local`` runs for real: PyFlink in its own virtualenv, the Flink Kafka
connector from Maven Central, the job reading and writing the broker's topics with Kafka
transactions. Its outputs are read back with ``read_committed``, as the sink reads them.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from plantwatch.bus.kafka import KafkaBus
from plantwatch.bus.kafka_config import topic_specs
from plantwatch.core.settings import KafkaSettings
from plantwatch.core.topics import Topics
from plantwatch.services import KafkaCluster
from plantwatch.store import ClickHouseStore, migrate
from plantwatch.store.client import Store
from plantwatch.stream.flink import runtime

from flink_support import (
    PARTITIONS,
    REPO_CACHE,
    Recorded,
    close,
    embedded_sets,
    flink_run,
    job_env,
    kill_group,
    partitions_of,
    publish,
    read_outputs,
    record_plant,
    sensitive_models,
    sets_of,
    standalone_cluster,
    stop_group,
    wait_until,
    with_trouble,
)
from kafka_support import unique_prefix

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def flink_env() -> runtime.FlinkEnv:
    """The Flink virtualenv and jars (made once in .cache/; a failure fails the run)."""
    return runtime.ensure(REPO_CACHE)


@pytest.fixture(scope="module")
def recorded(kafka: KafkaCluster, tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    """A 6-machine plant over 15 simulated minutes with machine and sensor faults, plus
    duplicated, late and malformed records."""
    rec = record_plant(
        kafka.bootstrap,
        unique_prefix(),
        tmp_path_factory.mktemp("recorded"),
        machines=6,
        duration=900,
        faults="bearing_wear:1,overheating:1,stuck:1,dropout:1",
    )
    return with_trouble(rec)


@pytest.fixture(scope="module")
def models(
    recorded: Recorded, chdb_engine: ClickHouseStore, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    db = chdb_engine.using(f"t_{uuid.uuid4().hex[:12]}")
    migrate(db)
    yield sensitive_models(recorded, db, tmp_path_factory.mktemp("models"))
    db.command(f"DROP DATABASE IF EXISTS {db.database}")


def _topics(bootstrap: str, prefix: str, partitions: int = PARTITIONS) -> None:
    bus = KafkaBus(bootstrap, KafkaSettings())
    try:
        bus.ensure_topics(topic_specs(Topics(prefix), KafkaSettings(partitions=partitions)))
    finally:
        bus.close()


@pytest.mark.parametrize("partitions", [1, PARTITIONS])
def test_the_flink_job_and_the_embedded_runner_give_the_same_outputs(
    kafka: KafkaCluster,
    flink_env: runtime.FlinkEnv,
    recorded: Recorded,
    store: Store,
    models: Path,
    tmp_path: Path,
    partitions: int,
) -> None:
    """The job keeps one pipeline per raw-topic partition, as a consumer-group worker does per
    partition it owns: its outputs equal the embedded runner's over each partition's records
    (with one partition: over the whole recording). Both score the promoted ONNX model of the
    centrifugal pumps: the job in its own virtualenv's onnxruntime, through the same code."""
    prefix = unique_prefix()
    _topics(kafka.bootstrap, prefix, partitions)
    publish(kafka.bootstrap, prefix, recorded)
    job = flink_run(
        *("--bus", f"kafka://{kafka.bootstrap}", "--bounded", "--parallelism", "2"),
        *("--checkpoint-interval", "2", "--transactional-id-prefix", prefix),
        prefix=prefix,
        partitions=partitions,
        tmp=tmp_path,
        models=models,
    )
    assert job.wait(timeout=600) == 0, (tmp_path / "flink.log").read_text()[-5000:]
    flink = sets_of(read_outputs(kafka.bootstrap, prefix))
    assert len(partitions_of(kafka.bootstrap, prefix)) == partitions
    embedded = embedded_sets(kafka.bootstrap, prefix, recorded, store, models=models)

    # the input is not trivial: every kind of trouble shows in the embedded runner's outputs
    assert sum(embedded.readings.values()) > 30_000
    late = Counter(k[-1] for k in embedded.readings.elements())
    assert late[1] >= 3, late
    reasons = Counter(k[0] for k in embedded.dead_letters.elements())
    assert {"malformed", "bad_unit", "stale_sequence"} <= set(reasons), reasons
    assert len(embedded.anomalies) > 0 and len(embedded.alerts) > 0
    model_rows = [k for k in embedded.anomalies if k[3] == "model:pca"]
    assert len(model_rows) > 20
    assert {k[5] for k in model_rows} == {"centrifugal_pump/pca/v1"}

    assert flink.readings == embedded.readings
    assert flink.feature_versions == embedded.feature_versions
    assert close(flink.features, embedded.features) == []
    assert flink.anomalies == embedded.anomalies
    assert close(flink.anomaly_values, embedded.anomaly_values) == []
    assert flink.alerts == embedded.alerts
    assert flink.dead_letters == embedded.dead_letters


def _checkpoints(folder: Path) -> list[Path]:
    return sorted(folder.glob("*/chk-*/_metadata"))


def test_killed_mid_stream_the_job_resumes_from_its_checkpoint_losing_and_repeating_nothing(
    kafka: KafkaCluster,
    flink_env: runtime.FlinkEnv,
    recorded: Recorded,
    store: Store,
    tmp_path: Path,
) -> None:
    prefix = unique_prefix()
    _topics(kafka.bootstrap, prefix)
    ckpt = tmp_path / "checkpoints"
    common = (
        *("--bus", f"kafka://{kafka.bootstrap}", "--parallelism", "2"),
        *("--checkpoint-interval", "1", "--checkpoint-dir", str(ckpt)),
        *("--transactional-id-prefix", prefix),
    )
    half = len(recorded.records) // 2
    publish(kafka.bootstrap, prefix, recorded, stop=half)
    job = flink_run(*common, prefix=prefix, tmp=tmp_path, log="flink-1.log")
    try:
        # running, checkpointed, and its first outputs committed
        wait_until(
            lambda: _checkpoints(ckpt) and read_outputs(kafka.bootstrap, prefix),
            timeout=300,
            what="a completed checkpoint and committed outputs",
        )
        assert job.poll() is None, (tmp_path / "flink-1.log").read_text()[-5000:]
        # the plant sends on while the job works; the job dies in the middle of it
        feeder = threading.Thread(
            target=publish,
            args=(kafka.bootstrap, prefix, recorded),
            kwargs={"start": half, "pace_s": 0.1},
        )
        feeder.start()
        time.sleep(2.0)
    finally:
        kill_group(job)
    feeder.join(timeout=120)
    before = read_outputs(kafka.bootstrap, prefix)
    assert before, "the killed job had committed some outputs"
    assert _checkpoints(ckpt), "the killed job left a checkpoint"

    embedded = embedded_sets(kafka.bootstrap, prefix, recorded, store, finish=False)
    assert sum(embedded.readings.values()) > sum(sets_of(before).readings.values())
    # resumed (a running job: its open windows stay open, as in the embedded run above)
    resumed = flink_run(
        *common, "--from-checkpoint", "latest", prefix=prefix, tmp=tmp_path, log="flink-2.log"
    )
    try:
        wait_until(
            lambda: (
                sum(sets_of(read_outputs(kafka.bootstrap, prefix)).readings.values())
                >= sum(embedded.readings.values())
            ),
            timeout=300,
            what="the resumed job to catch up",
        )
        time.sleep(3.0)  # a few more checkpoints: anything extra would show now
    finally:
        assert stop_group(resumed) == 0, (tmp_path / "flink-2.log").read_text()[-5000:]
    after = sets_of(read_outputs(kafka.bootstrap, prefix))
    # nothing lost and nothing twice: every output exactly as often as in one uninterrupted pass
    assert after.readings == embedded.readings
    assert max(after.readings.values()) == 1
    assert after.feature_versions == embedded.feature_versions
    assert close(after.features, embedded.features) == []
    assert after.anomalies == embedded.anomalies
    assert after.alerts == embedded.alerts
    assert after.dead_letters == embedded.dead_letters


def test_submit_runs_the_job_on_a_standalone_flink_cluster(
    kafka: KafkaCluster,
    flink_env: runtime.FlinkEnv,
    recorded: Recorded,
    store: Store,
    tmp_path: Path,
) -> None:
    """``plantwatch flink submit`` to a JobManager (the Flink distribution's own processes, not
    a MiniCluster): the cluster gets the plantwatch package and the connector jars with the job,
    and its outputs are the embedded runner's."""
    prefix = unique_prefix()
    _topics(kafka.bootstrap, prefix)
    publish(kafka.bootstrap, prefix, recorded)
    with standalone_cluster(flink_env, tmp_path / "cluster") as jobmanager:
        done = subprocess.run(
            [
                *(sys.executable, "-m", "plantwatch.cli", "flink", "submit"),
                *("--jobmanager", jobmanager, "--bus", f"kafka://{kafka.bootstrap}"),
                *("--parallelism", "2", "--bounded", "--cluster-python", str(flink_env.python)),
                *("--checkpoint-interval", "2", "--transactional-id-prefix", prefix),
            ],
            capture_output=True,
            text=True,
            timeout=600,
            env=job_env(prefix, tmp_path),
            check=False,
        )
        assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
        assert "Job has been submitted with JobID" in done.stdout + done.stderr
    flink = sets_of(read_outputs(kafka.bootstrap, prefix))
    embedded = embedded_sets(kafka.bootstrap, prefix, recorded, store)
    assert sum(flink.readings.values()) > 30_000
    assert flink.readings == embedded.readings
    assert flink.feature_versions == embedded.feature_versions
    assert flink.anomalies == embedded.anomalies
    assert flink.alerts == embedded.alerts
    assert flink.dead_letters == embedded.dead_letters
