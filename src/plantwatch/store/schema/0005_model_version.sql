-- plantwatch schema v5: the model version of an anomaly a pre-trained model raised (issue 7).

-- '<machine type>/<model name>/v<N>' for detector 'model:<name>'; '' for the stream's built-in
-- detectors, which have no version of their own.
ALTER TABLE {db}.anomalies ADD COLUMN IF NOT EXISTS model_version LowCardinality(String) DEFAULT '';
