-- plantwatch schema v2: alert history with labels, alarms (lifecycle), silences, notifications.

ALTER TABLE {db}.alert_events ADD COLUMN IF NOT EXISTS previous LowCardinality(String) DEFAULT '';
ALTER TABLE {db}.alert_events ADD COLUMN IF NOT EXISTS threshold Float64 DEFAULT nan;
-- JSON objects: labels (alertname, severity, machine_id, sensor_id, kind, line, …) and the
-- rendered annotations (summary, description, runbook_url, …)
ALTER TABLE {db}.alert_events ADD COLUMN IF NOT EXISTS labels String DEFAULT '{}';
ALTER TABLE {db}.alert_events ADD COLUMN IF NOT EXISTS annotations String DEFAULT '{}';

-- Alarms: append-only events. One alarm per (rule, machine, sensor) is active at a time; it is
-- created when the alert instance fires, escalated when its severity rises, cleared when it
-- resolves; people acknowledge, assign and comment on it.
CREATE TABLE IF NOT EXISTS {db}.alarm_events
(
    alarm_id    String,
    ts          DateTime64(3, 'UTC'),
    event       LowCardinality(String),  -- created|escalated|cleared|acknowledged|assigned|commented
    fingerprint String,
    rule        LowCardinality(String),
    machine_id  LowCardinality(String),
    sensor_id   LowCardinality(String),
    kind        LowCardinality(String),
    severity    LowCardinality(String),
    value       Float64,
    message     String,
    user        String,
    comment     String,
    assignee    String,
    created_at  DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(created_at)
ORDER BY (alarm_id, ts, event, user);

-- The current state of every alarm, folded from its events.
CREATE VIEW IF NOT EXISTS {db}.alarms AS
SELECT
    alarm_id,
    any(fingerprint) AS fingerprint,
    any(rule) AS rule,
    any(machine_id) AS machine_id,
    any(sensor_id) AS sensor_id,
    any(kind) AS kind,
    min(created_at) AS created_at,
    argMaxIf(severity, ts, event IN ('created', 'escalated')) AS severity,
    if(countIf(event = 'cleared') > 0, 'CLEARED', 'ACTIVE') AS status,
    if(countIf(event = 'acknowledged') > 0, 'ACK', 'UNACK') AS ack,
    maxIf(ts, event = 'cleared') AS cleared_at,
    argMaxIf(user, ts, event = 'acknowledged') AS acknowledged_by,
    maxIf(ts, event = 'acknowledged') AS acknowledged_at,
    argMaxIf(assignee, ts, event = 'assigned') AS assignee,
    argMaxIf(message, ts, event IN ('created', 'escalated')) AS message,
    argMaxIf(value, ts, event IN ('created', 'escalated')) AS value,
    max(ts) AS updated_at
FROM {db}.alarm_events
GROUP BY alarm_id;

-- Silences mute notifications (never evaluation) of alerts whose labels match all matchers.
CREATE TABLE IF NOT EXISTS {db}.silences
(
    silence_id String,
    matchers   String,  -- JSON list of "label op value" strings
    starts_at  DateTime64(3, 'UTC'),
    ends_at    DateTime64(3, 'UTC'),
    created_by String,
    comment    String,
    updated_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY silence_id;

-- Every delivery attempt's outcome, for audit and the pipeline dashboard.
CREATE TABLE IF NOT EXISTS {db}.notifications
(
    ts             DateTime64(3, 'UTC'),
    receiver       LowCardinality(String),
    group_key      String,
    status         LowCardinality(String),
    reason         LowCardinality(String),
    escalation_step UInt8,
    alerts         UInt32,
    fingerprints   Array(String),
    ok             UInt8,
    attempts       UInt16,
    error          String,
    latency_ms     Nullable(Int64)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (receiver, ts);
