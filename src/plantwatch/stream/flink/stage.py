"""One key's share of the Flink job: the pipeline state and what one Kafka record does to it.

The job keys the raw-readings stream by Kafka partition (the SDK keys readings by machine, so
a partition holds whole machines, in order) and keeps one :class:`Pipeline` per partition in
Flink keyed state, as a Kafka consumer-group worker keeps one per worker. Each record (one SDK
batch of a machine's readings) goes through :meth:`Stage.record`, which is the worker's step on
a one-message batch: the same decoding, the same ``Pipeline.process``, the same output messages.
Nothing here imports PyFlink, so the parity test and the unit tests run it directly.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from plantwatch.alert.rules import Rule
from plantwatch.bus.base import Message
from plantwatch.core.topics import Topics
from plantwatch.models.scoring import ModelScorer
from plantwatch.stream.batches import decode_messages
from plantwatch.stream.messages import OutMessage, output_messages, whole_dead_letters
from plantwatch.stream.outputs import Counts
from plantwatch.stream.pipeline import Pipeline, PipelineConfig


def registry_token(machines: Mapping[str, Mapping[str, str]]) -> str:
    """A digest of the machine registry, to tell whether a key's pipeline has the latest."""
    text = json.dumps(sorted(machines.items()), sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()


@dataclass(slots=True)
class KeyState:
    """What Flink keeps per key (pickled): the pipeline and the registry it was given."""

    pipeline: Pipeline
    registry: str = ""
    records: int = 0
    counts: Counts = field(default_factory=Counts)


@dataclass(frozen=True, slots=True)
class Stage:
    """The pipeline's settings and rules, the topics; builds and advances key states."""

    config: PipelineConfig
    rules: Sequence[Rule]
    topics: Topics
    #: the model registry the key pipelines score with (None: no models), and how often they
    #: look for a newly promoted version
    model_registry: str | None = None
    model_reload_s: float = 5.0

    def new_state(self) -> KeyState:
        models = (
            None
            if self.model_registry is None
            else ModelScorer(
                self.model_registry, reload_s=self.model_reload_s, window_s=self.config.window_s
            )
        )
        return KeyState(Pipeline(self.config, rules=list(self.rules), models=models))

    def sync_registry(
        self, state: KeyState, machines: Mapping[str, Mapping[str, str]], token: str
    ) -> None:
        """Give the key's pipeline the machine registry if it changed since it was last given."""
        if state.registry != token and machines:
            state.pipeline.register_machines(machines.values())
            state.registry = token

    def resume(self, state: KeyState, *, arrival_ms: int) -> None:
        """The first record of a key after the job (re)started: its state may come from a
        checkpoint taken before a stop, and the stop is no silence of the plant's machines."""
        state.pipeline.windows.resume(arrival_ms)

    def record(
        self,
        state: KeyState,
        *,
        value: bytes,
        key: bytes | None,
        headers: Mapping[str, str],
        partition: int,
        offset: int,
        now_ms: int,
        arrival_ms: int,
    ) -> list[OutMessage]:
        """One raw-topic record through the pipeline; the messages it produces."""
        m = Message(self.topics.raw, value, key, headers, offset, partition)
        batch = decode_messages([m], keep_whole=True)
        out = state.pipeline.process(
            batch.table,
            now_ms=now_ms,
            rejects=batch.rejects,
            source=self.topics.raw,
            arrival_ms=arrival_ms,
        )
        msgs = list(output_messages(out, self.topics))
        msgs += whole_dead_letters(batch.undecodable, out, now_ms, self.topics)
        state.records += 1
        state.counts.add(out.counts)
        return msgs

    def finish(self, state: KeyState, *, now_ms: int) -> list[OutMessage]:
        """End of a bounded input: fire the open windows, as the embedded runner's finish."""
        return list(output_messages(state.pipeline.flush(now_ms=now_ms), self.topics))


def machine_rows(values: Iterable[Mapping[str, str]]) -> dict[str, dict[str, str]]:
    """Registry rows by machine_id (a later row for a machine replaces the earlier one)."""
    return {str(r["machine_id"]): dict(r) for r in values}
