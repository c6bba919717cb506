-- plantwatch schema v3: sites in the machine registry (dashboards filter by site, line and
-- machine) and retention for a long-running ClickHouse server.

ALTER TABLE {db}.machines ADD COLUMN IF NOT EXISTS site LowCardinality(String) DEFAULT '' AFTER line;

-- Retention counts from when a row was stored (ingested_at, detected_at, ...), not from its
-- event time: a backfill of old history is kept as long as fresh data. Change a period on a
-- server with ALTER TABLE ... MODIFY TTL; raw_readings keeps its 7 days (0001).
--   processed readings 90 days -> the 1-minute rollup 400 days -> the 1-hour rollup 5 years;
--   features 90 days; anomalies, alert events, alarm events 2 years; dead letters 30 days;
--   notification attempts 1 year.
ALTER TABLE {db}.readings MODIFY TTL toDateTime(ingested_at) + INTERVAL 90 DAY;
ALTER TABLE {db}.readings_1m MODIFY TTL minute + INTERVAL 400 DAY;
ALTER TABLE {db}.readings_1h MODIFY TTL hour + INTERVAL 5 YEAR;
ALTER TABLE {db}.features MODIFY TTL toDateTime(computed_at) + INTERVAL 90 DAY;
ALTER TABLE {db}.anomalies MODIFY TTL toDateTime(detected_at) + INTERVAL 2 YEAR;
ALTER TABLE {db}.alert_events MODIFY TTL toDateTime(emitted_at) + INTERVAL 2 YEAR;
ALTER TABLE {db}.alarm_events MODIFY TTL toDateTime(created_at) + INTERVAL 2 YEAR;
ALTER TABLE {db}.dead_letters MODIFY TTL toDateTime(received_at) + INTERVAL 30 DAY;
ALTER TABLE {db}.notifications MODIFY TTL toDateTime(ts) + INTERVAL 1 YEAR;
