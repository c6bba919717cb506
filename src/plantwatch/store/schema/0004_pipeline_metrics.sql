-- plantwatch schema v4: consumer lag samples.

-- Consumer lag samples of the stream's consumers (stream/lag.py), for the Pipeline dashboard.
CREATE TABLE IF NOT EXISTS {db}.pipeline_metrics
(
    ts             DateTime64(3, 'UTC'),
    component      LowCardinality(String),  -- embedded | worker | sink
    consumer_group LowCardinality(String),
    member         LowCardinality(String),  -- host:pid
    lag            UInt64                   -- messages not read yet
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (consumer_group, ts)
TTL toDateTime(ts) + INTERVAL 30 DAY;
