-- plantwatch schema v1. `{db}` is replaced by the database name.
-- Timestamps are DateTime64(3, 'UTC'): milliseconds, like the Reading contract.

-- Machines (asset registry): machine type decides static limits.
CREATE TABLE IF NOT EXISTS {db}.machines
(
    machine_id   String,
    machine_type LowCardinality(String),
    line         LowCardinality(String),
    name         String,
    updated_at   DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY machine_id;

-- Landing table: the stream inserts each accepted batch here ONCE; materialized views fan it out
-- to raw_readings and readings (and readings to the rollups), so one INSERT stores both shapes.
CREATE TABLE IF NOT EXISTS {db}.readings_ingest
(
    machine_id     String,
    machine_type   String,
    sensor_id      String,
    kind           String,
    ts             DateTime64(3, 'UTC'),
    seq            UInt64,
    raw_value      Float64,
    raw_unit       String,
    value          Float64,
    unit           String,
    quality        String,
    anomaly_score  Float32,
    late           UInt8,
    schema_version UInt8,
    ingested_at    DateTime64(3, 'UTC')
)
ENGINE = Null;

-- Raw readings as received (device units), short TTL. Keyed by (machine, sensor, seq).
CREATE TABLE IF NOT EXISTS {db}.raw_readings
(
    machine_id     LowCardinality(String),
    sensor_id      LowCardinality(String),
    kind           LowCardinality(String),
    value          Float64 CODEC(Gorilla, ZSTD),
    unit           LowCardinality(String),
    ts             DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD),
    seq            UInt64 CODEC(Delta, ZSTD),
    quality        LowCardinality(String),
    schema_version UInt8,
    ingested_at    DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (machine_id, sensor_id, seq)
TTL toDateTime(ingested_at) + INTERVAL 7 DAY;

-- Processed readings: canonical units, quality, anomaly score, late flag.
CREATE TABLE IF NOT EXISTS {db}.readings
(
    machine_id    LowCardinality(String),
    machine_type  LowCardinality(String),
    sensor_id     LowCardinality(String),
    kind          LowCardinality(String),
    ts            DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD),
    seq           UInt64 CODEC(Delta, ZSTD),
    value         Float64 CODEC(Gorilla, ZSTD),
    unit          LowCardinality(String),
    quality       LowCardinality(String),
    anomaly_score Float32,
    late          UInt8,
    ingested_at   DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (machine_id, sensor_id, ts, seq);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.readings_ingest_to_raw TO {db}.raw_readings AS
SELECT machine_id, sensor_id, kind, raw_value AS value, raw_unit AS unit, ts, seq, quality,
       schema_version, ingested_at
FROM {db}.readings_ingest;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.readings_ingest_to_readings TO {db}.readings AS
SELECT machine_id, machine_type, sensor_id, kind, ts, seq, value, unit, quality, anomaly_score,
       late, ingested_at
FROM {db}.readings_ingest;

-- 1-minute rollup of good and uncertain readings: sums only (no quantile states), so it merges
-- cheaply and rolls up again into hours. mean = sum / count; std from sum_sq.
CREATE TABLE IF NOT EXISTS {db}.readings_1m
(
    machine_id        LowCardinality(String),
    sensor_id         LowCardinality(String),
    kind              LowCardinality(String),
    minute            DateTime('UTC'),
    count             SimpleAggregateFunction(sum, UInt64),
    sum               SimpleAggregateFunction(sum, Float64),
    sum_sq            SimpleAggregateFunction(sum, Float64),
    min               SimpleAggregateFunction(min, Float64),
    max               SimpleAggregateFunction(max, Float64),
    anomaly_score_max SimpleAggregateFunction(max, Float32)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (machine_id, sensor_id, kind, minute);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.readings_1m_mv TO {db}.readings_1m AS
SELECT machine_id, sensor_id, kind, toStartOfMinute(ts) AS minute,
       count() AS count, sum(value) AS sum, sum(value * value) AS sum_sq,
       min(value) AS min, max(value) AS max, max(anomaly_score) AS anomaly_score_max
FROM {db}.readings
WHERE quality != 'bad'
GROUP BY machine_id, sensor_id, kind, minute;

CREATE TABLE IF NOT EXISTS {db}.readings_1h
(
    machine_id        LowCardinality(String),
    sensor_id         LowCardinality(String),
    kind              LowCardinality(String),
    hour              DateTime('UTC'),
    count             SimpleAggregateFunction(sum, UInt64),
    sum               SimpleAggregateFunction(sum, Float64),
    sum_sq            SimpleAggregateFunction(sum, Float64),
    min               SimpleAggregateFunction(min, Float64),
    max               SimpleAggregateFunction(max, Float64),
    anomaly_score_max SimpleAggregateFunction(max, Float32)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (machine_id, sensor_id, kind, hour);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.readings_1h_mv TO {db}.readings_1h AS
SELECT machine_id, sensor_id, kind, toStartOfHour(minute) AS hour,
       sum(count) AS count, sum(sum) AS sum, sum(sum_sq) AS sum_sq,
       min(min) AS min, max(max) AS max, max(anomaly_score_max) AS anomaly_score_max
FROM {db}.readings_1m
GROUP BY machine_id, sensor_id, kind, hour;

-- Window features; a window updated by late data is written again with a higher version.
CREATE TABLE IF NOT EXISTS {db}.features
(
    machine_id   LowCardinality(String),
    sensor_id    LowCardinality(String),
    kind         LowCardinality(String),
    window_start DateTime64(3, 'UTC'),
    window_end   DateTime64(3, 'UTC'),
    count        UInt32,
    mean         Float64,
    min          Float64,
    max          Float64,
    std          Float64,
    last         Float64,
    rms          Nullable(Float64),
    version      UInt32,
    computed_at  DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(window_start)
ORDER BY (machine_id, sensor_id, window_start);

CREATE TABLE IF NOT EXISTS {db}.anomalies
(
    ts           DateTime64(3, 'UTC'),
    machine_id   LowCardinality(String),
    machine_type LowCardinality(String),
    sensor_id    LowCardinality(String),
    kind         LowCardinality(String),
    detector     LowCardinality(String),
    severity     LowCardinality(String),
    score        Float64,
    value        Float64,
    threshold    Float64,
    message      String,
    detected_at  DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (machine_id, sensor_id, detector, ts);

CREATE TABLE IF NOT EXISTS {db}.alert_events
(
    ts           DateTime64(3, 'UTC'),
    rule         LowCardinality(String),
    state        LowCardinality(String),
    severity     LowCardinality(String),
    machine_id   LowCardinality(String),
    sensor_id    LowCardinality(String),
    kind         LowCardinality(String),
    value        Float64,
    message      String,
    fingerprint  String,
    active_since DateTime64(3, 'UTC'),
    emitted_at   DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (fingerprint, ts, state);

-- Dead letters keep the record as received; keyed so a replayed record is stored once.
CREATE TABLE IF NOT EXISTS {db}.dead_letters
(
    received_at DateTime64(3, 'UTC'),
    reason      LowCardinality(String),
    detail      String,
    source      LowCardinality(String),
    machine_id  String,
    sensor_id   String,
    seq         Nullable(UInt64),
    payload     String
)
ENGINE = ReplacingMergeTree
ORDER BY (machine_id, sensor_id, reason, cityHash64(payload));
