"""The stream stage as an Apache Flink job (PyFlink), running the project's own pipeline.

``stage.py`` is what one record does to one key's state (plain Python, no PyFlink import);
``job.py`` wires it into a Flink job (Kafka in, Kafka out, checkpoints); ``runtime.py`` prepares
the Flink environment (its own virtualenv and the connector jars) and starts the job locally
or on a cluster; ``cli.py`` is ``plantwatch flink``.
"""
