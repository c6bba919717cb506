"""The stream's model stage: the promoted model of each machine type scores closed windows.

For every batch of windows the pipeline has just closed, :meth:`ModelScorer.score` pivots their
features into one row per (machine, window) with the model's own :class:`FeatureSpec` (the code
training used), fills missing values with the training means, and runs all rows of a machine
type through onnxruntime in one call. A row whose score passes the model's warning threshold
becomes an anomaly (``detector`` ``model:<name>``, ``model_version`` ``<type>/<name>/vN``,
the sensor whose statistic is furthest from its training mean named as the most unusual).

The scorer looks at the registry's ``promoted.json`` of each machine type it sees at most every
``reload_s`` seconds (wall time); a different promoted version is loaded (its sha256 checked)
and used from the next batch on — no restart. A registry that cannot be read or a model that
cannot be loaded is logged and the previous model (or none) keeps going: the stream never stops
because of a model. The scorer pickles without its onnxruntime sessions (it lives in Flink
state too) and loads them again on first use.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from plantwatch.batch.archive import ArchiveError
from plantwatch.core.reading import TS_TYPE
from plantwatch.core.settings import Settings
from plantwatch.models.features import FeatureSpec, machine_matrix
from plantwatch.models.registry import LoadedModel, ModelRef, Registry
from plantwatch.stream.outputs import ANOMALIES_SCHEMA

log = logging.getLogger("plantwatch.models")

F64 = npt.NDArray[np.float64]


def session(onnx: bytes) -> Any:
    """An onnxruntime session on one thread (the stream's other work has the other cores)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(onnx, sess_options=opts, providers=["CPUExecutionProvider"])


def run_scores(sess: Any, x: F64) -> F64:
    """The model's ``score`` output for the rows of ``x`` (float32 in, float64 out)."""
    if len(x) == 0:
        return np.zeros(0, np.float64)
    (out,) = sess.run(["score"], {"X": np.ascontiguousarray(x, np.float32)})
    return np.asarray(out, np.float64).reshape(-1)


@dataclass(slots=True)
class Active:
    """A loaded model: its session, what it reads, where it alerts."""

    ref: ModelRef
    spec: FeatureSpec
    warning: float
    critical: float
    session: Any

    @staticmethod
    def of(model: LoadedModel) -> Active:
        meta = model.metadata
        thr = meta["threshold"]
        return Active(
            model.ref,
            FeatureSpec.from_json(meta["features"]),
            float(thr["warning"]),
            float(thr["critical"]),
            session(model.onnx),
        )


def scorer_from_settings(settings: Settings) -> ModelScorer | None:
    """The stream's model stage as configured (None when models are switched off)."""
    if not settings.models.enabled:
        return None
    return ModelScorer(
        settings.resolved_model_registry(),
        reload_s=settings.models.reload_s,
        window_s=settings.stream.window_s,
    )


class ModelScorer:
    """Scores windows with the promoted model per machine type; see the module docstring."""

    def __init__(
        self,
        registry_url: str | None,
        *,
        reload_s: float = 5.0,
        window_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry_url = registry_url
        self.reload_s = reload_s
        self.window_s = window_s
        self.clock = clock
        self._registry: Registry | None = None
        self._active: dict[str, Active] = {}
        self._checked: dict[str, float] = {}
        self._warned: set[str] = set()
        #: promoted versions that could not be used (corrupt, not ONNX, other window size):
        #: versions never change, so they are not downloaded again
        self._refused: set[ModelRef] = set()
        #: models loaded so far (a promotion picked up counts again)
        self.loads = 0

    def __getstate__(self) -> dict[str, Any]:
        return {
            "registry_url": self.registry_url,
            "reload_s": self.reload_s,
            "window_s": self.window_s,
            "loads": self.loads,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(  # type: ignore[misc]
            state["registry_url"], reload_s=state["reload_s"], window_s=state["window_s"]
        )
        self.loads = state["loads"]

    def active(self) -> dict[str, ModelRef]:
        """The model in use per machine type."""
        return {t: a.ref for t, a in self._active.items()}

    # -- loading ----------------------------------------------------------------------------

    def _warn_once(self, key: str, msg: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(msg, *args)

    def refresh(self, machine_types: npt.NDArray[Any], *, force: bool = False) -> None:
        """Load the promoted model of each of ``machine_types`` if it changed (at most every
        ``reload_s`` per type unless ``force``)."""
        if self.registry_url is None:
            return
        now = self.clock()
        for mtype in {str(t) for t in np.unique(machine_types)} - {"", "unknown"}:
            if not force and now - self._checked.get(mtype, -np.inf) < self.reload_s:
                continue
            self._checked[mtype] = now
            try:
                if self._registry is None:
                    self._registry = Registry(self.registry_url)
                ref = self._registry.promoted(mtype)
            except Exception as exc:  # unreachable or unreadable: look again next time
                self._cannot_load(mtype, exc)
                continue
            current = self._active.get(mtype)
            if ref is None:
                if current is not None:
                    log.info("no promoted model for %s any more: %s stops", mtype, current.ref)
                    del self._active[mtype]
                continue
            if (current is not None and current.ref == ref) or ref in self._refused:
                continue
            try:
                loaded = Active.of(self._registry.load(ref))
            except ArchiveError as exc:  # reading failed: try again next time
                self._cannot_load(mtype, exc)
                continue
            except Exception as exc:  # a version never changes: a bad one stays bad
                self._refused.add(ref)
                self._cannot_load(mtype, exc)
                continue
            if abs(loaded.spec.window_s - self.window_s) > 1e-9:
                self._refused.add(ref)
                log.warning(
                    "model %s was trained on %gs windows, the stream closes %gs windows: not used",
                    ref,
                    loaded.spec.window_s,
                    self.window_s,
                )
                continue
            self._active[mtype] = loaded
            self.loads += 1
            log.info("model %s in use for %s machines", ref, mtype)

    def _cannot_load(self, mtype: str, exc: Exception) -> None:
        self._warn_once(
            f"load:{mtype}:{exc}",
            "cannot load the promoted model of %s from %s (%s); %s",
            mtype,
            self.registry_url,
            exc,
            "keeping the one in use" if mtype in self._active else "no model scores it",
        )

    # -- scoring ----------------------------------------------------------------------------

    def score(self, features: pa.Table, machine_type: npt.NDArray[Any], now_ms: int) -> pa.Table:
        """Anomaly rows (ANOMALIES_SCHEMA) for the machines whose closed windows in
        ``features`` (one row per sensor and window; ``machine_type`` per row) score above
        their model's warning threshold."""
        self.refresh(machine_type)
        out = []
        for mtype, active in self._active.items():
            rows = machine_matrix(features, machine_type, active.spec)
            if len(rows) == 0:
                continue
            x, usable = active.spec.impute(rows.x)
            if not usable.any():
                continue
            idx = np.flatnonzero(usable)
            try:
                scores = run_scores(active.session, x[idx])
            except Exception as exc:  # onnxruntime raises its own types
                self._warn_once(
                    f"run:{active.ref}", "model %s failed to score: %s", active.ref, exc
                )
                continue
            hit = np.flatnonzero(np.isfinite(scores) & (scores > active.warning))
            if len(hit):
                out.append(
                    self._rows(
                        mtype,
                        active,
                        rows.machine_id[idx[hit]],
                        rows.window_end_ms[idx[hit]],
                        x[idx[hit]],
                        scores[hit],
                        now_ms,
                    )
                )
        return pa.concat_tables(out) if out else ANOMALIES_SCHEMA.empty_table()

    @staticmethod
    def _rows(
        mtype: str,
        a: Active,
        machine: npt.NDArray[Any],
        end_ms: npt.NDArray[np.int64],
        x: F64,
        scores: F64,
        now_ms: int,
    ) -> pa.Table:
        spec = a.spec
        n = len(scores)
        mean = np.asarray(spec.mean, np.float64)
        std = np.maximum(np.asarray(spec.std, np.float64), 1e-9)
        z = np.abs(x - mean) / std
        top = np.argmax(z, axis=1)
        n_stats = len(spec.stats)
        sensor = np.array(spec.sensors, dtype=object)[top // n_stats]
        kind = np.array(spec.kinds, dtype=object)[top // n_stats]
        cols = np.array(spec.columns, dtype=object)[top]
        value = x[np.arange(n), top]
        ztop = z[np.arange(n), top]
        severity = np.where(scores > a.critical, "critical", "warning")
        version = str(a.ref)
        messages = [
            f"model {a.ref.name} v{a.ref.version}: score {scores[i]:.3g} vs {a.warning:.3g}; "
            f"most unusual {cols[i]} {value[i]:.4g} ({ztop[i]:.1f} σ from training)"
            for i in range(n)
        ]
        return pa.Table.from_arrays(
            [
                pa.array(end_ms, pa.int64()).cast(TS_TYPE),
                pa.array(machine.astype(str), pa.string()),
                pa.array([mtype] * n, pa.string()),
                pa.array(sensor.astype(str), pa.string()),
                pa.array(kind.astype(str), pa.string()),
                pa.array([f"model:{a.ref.name}"] * n, pa.string()),
                pa.array(severity.astype(str), pa.string()),
                pa.array(scores),
                pa.array(value),
                pa.array(np.full(n, a.warning)),
                pa.array(messages, pa.string()),
                pa.array(np.full(n, now_ms, np.int64)).cast(TS_TYPE),
                pa.array([version] * n, pa.string()),
            ],
            schema=ANOMALIES_SCHEMA,
        )
