"""Settings: one object, built once in ``cli.py`` from the environment (``PLANTWATCH_`` prefix).

Nested groups use ``__``: ``PLANTWATCH_STREAM__WINDOW_S=30``. Library classes never read the
environment; they take these values as keyword arguments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

GiB = 1024**3
MiB = 1024**2


class SpoolSettings(BaseModel):
    """The edge SDK's durable store-and-forward spool."""

    max_bytes: int = Field(default=1 * GiB, ge=1 * MiB)
    segment_bytes: int = Field(default=16 * MiB, ge=64 * 1024)
    when_full: Literal["block", "reject", "drop_oldest"] = "block"
    block_timeout_s: float = Field(default=30.0, ge=0)
    fsync: bool = True


class BatchingSettings(BaseModel):
    """How the SDK groups typed readings before they reach the spool."""

    max_readings: int = Field(default=5_000, ge=1)
    max_delay_s: float = Field(default=0.2, ge=0)


class StreamSettings(BaseModel):
    """Validation, de-duplication, windows and micro-batching of the stream."""

    window_s: float = Field(default=10.0, gt=0)
    out_of_orderness_s: float = Field(default=5.0, ge=0)
    allowed_lateness_s: float = Field(default=60.0, ge=0)
    max_future_skew_s: float = Field(default=300.0, ge=0)
    max_age_s: float = Field(default=7 * 86_400.0, gt=0)
    dedupe_horizon: int = Field(default=100_000, ge=1)
    no_data_after_s: float = Field(default=60.0, gt=0)
    #: a machine from which nothing arrived for this long (wall clock) stops holding the
    #: watermark back
    idle_source_s: float = Field(default=5.0, gt=0)
    #: readings per micro-batch (the stream stage gains up to ~100,000; docs/performance.md)
    max_batch_rows: int = Field(default=80_000, ge=1)
    max_batch_wait_s: float = Field(default=0.2, ge=0)
    #: batches the embedded runner may process ahead of the store writer (0: write in step)
    write_ahead: int = Field(default=1, ge=0, le=8)


class BusSettings(BaseModel):
    max_messages: int = Field(default=256, ge=1)
    publish_timeout_s: float = Field(default=60.0, ge=0)


class KafkaSettings(BaseModel):
    """Apache Kafka: the client, the topics plantwatch creates, and security (passed to
    librdkafka as is; secrets are ``SecretStr`` and never logged)."""

    client_id: str = "plantwatch"
    partitions: int = Field(default=6, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    min_insync_replicas: int = Field(default=1, ge=1)
    retention_ms: int = Field(default=7 * 86_400_000, ge=-1)
    max_message_bytes: int = Field(default=16 * MiB, ge=1024)
    compression: Literal["zstd", "lz4", "snappy", "gzip", "none"] = "zstd"
    linger_ms: int = Field(default=20, ge=0)
    session_timeout_ms: int = Field(default=10_000, ge=1000)
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str | None = None  # e.g. SCRAM-SHA-256, SCRAM-SHA-512, PLAIN
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: str | None = None
    ssl_certificate_location: str | None = None
    ssl_key_location: str | None = None
    ssl_key_password: SecretStr | None = None
    #: any other librdkafka property, e.g. {"socket.keepalive.enable": "true"}
    extra: dict[str, str] = Field(default_factory=dict)


class LogSettings(BaseModel):
    """The JSON-lines log files every process writes (ECS field names; ``core/logs.py``,
    ``deploy/elastic/``): ``PLANTWATCH_LOG__DIR``, ``__MAX_BYTES``, ``__BACKUPS``, ``__LEVEL``,
    ``__ENABLED``. The console output is separate and unchanged."""

    #: folder of ``<service>.ndjson`` and its rotated files; None: ``<data_dir>/logs``;
    #: ``-``: no log files
    dir: Path | None = None
    #: a file is rotated when the next line would make it larger than this, and at UTC midnight
    max_bytes: int = Field(default=50 * MiB, ge=64 * 1024)
    #: rotated files kept per service (and instance); the oldest are deleted
    backups: int = Field(default=20, ge=1)
    #: the lowest level written to the files (``-v`` lowers it to DEBUG)
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    enabled: bool = True

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, v: object) -> object:
        return v.upper() if isinstance(v, str) else v


class FlinkSettings(BaseModel):
    """The Flink job (``plantwatch flink``): ``PLANTWATCH_FLINK__CHECKPOINT_INTERVAL_S`` etc."""

    #: seconds between checkpoints; exactly-once output needs them (0: off, at-least-once)
    checkpoint_interval_s: float = Field(default=10.0, ge=0)
    #: a failed job restarts from its last checkpoint this many times, then fails
    restart_attempts: int = Field(default=3, ge=0)
    restart_delay_s: float = Field(default=2.0, ge=0)


class ModelSettings(BaseModel):
    """Pre-trained models (``plantwatch train|models``): ``PLANTWATCH_MODELS__REGISTRY`` etc."""

    #: the model registry: a folder, ``gs://bucket/prefix`` or ``s3://bucket/prefix``
    #: (None: ``<data_dir>/models``)
    registry: str | None = None
    #: the stream looks for a newly promoted model this often (seconds)
    reload_s: float = Field(default=5.0, gt=0)
    #: false: the stream scores no model even where one is promoted
    enabled: bool = True


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PLANTWATCH_", env_nested_delimiter="__", extra="ignore"
    )

    data_dir: Path = Path("data")
    #: ``chdb:///path`` (embedded, default: ``<data_dir>/clickhouse``) or ``http(s)://host:port``.
    store_url: str | None = None
    database: str = "plantwatch"
    clickhouse_user: str = "default"
    clickhouse_password: SecretStr = SecretStr("")
    topic_prefix: str = "plantwatch"
    spool: SpoolSettings = SpoolSettings()
    batching: BatchingSettings = BatchingSettings()
    stream: StreamSettings = StreamSettings()
    bus: BusSettings = BusSettings()
    kafka: KafkaSettings = KafkaSettings()
    #: where fetched artefacts (Kafka server jars) are cached
    cache_dir: Path = Path(".cache")
    #: alert rules and notification routing (YAML, docs/alerts.md); None: the shipped defaults
    rules_file: Path | None = None
    #: where ``plantwatch export`` writes and ``replay`` reads (None: ``<data_dir>/archive``)
    archive_url: str | None = None
    log: LogSettings = LogSettings()
    flink: FlinkSettings = FlinkSettings()
    models: ModelSettings = ModelSettings()

    def resolved_store_url(self) -> str:
        if self.store_url:
            return self.store_url
        return f"chdb://{(self.data_dir / 'clickhouse').resolve()}"

    def resolved_archive_url(self) -> str:
        """The archive export writes to and replay reads: ``PLANTWATCH_ARCHIVE_URL`` (a folder,
        ``gs://bucket/prefix`` or ``s3://bucket/prefix``), by default ``<data_dir>/archive``."""
        return self.archive_url or str((self.data_dir / "archive").resolve())

    def resolved_model_registry(self) -> str:
        """Where models are registered and the stream loads them from."""
        return self.models.registry or str((self.data_dir / "models").resolve())

    def resolved_log_dir(self) -> Path | None:
        """Where the JSON log files go, or None when they are switched off."""
        if not self.log.enabled or (self.log.dir is not None and str(self.log.dir) == "-"):
            return None
        return self.log.dir if self.log.dir is not None else self.data_dir / "logs"
