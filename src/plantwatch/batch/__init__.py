"""The batch side: logs and stored history exported to CSV/Parquet, archived, replayed.

``layout`` is the contract (datasets, partitions, schemas); ``archive`` the fsspec store with
manifests and checksums; ``export`` the incremental, crash-safe export from ``sources``;
``replay`` feeds archived readings back through the pipeline.
"""
