"""Stream processing: ``pipeline`` (the logic, pure over batches) and its runners."""

from plantwatch.stream.outputs import AlertEvent, Counts, Output
from plantwatch.stream.pipeline import Pipeline, PipelineConfig

__all__ = ["AlertEvent", "Counts", "Output", "Pipeline", "PipelineConfig"]
