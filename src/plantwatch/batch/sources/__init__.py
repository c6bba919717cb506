"""Where an export reads from: log files, a ClickHouse store, Elasticsearch/OpenSearch."""
