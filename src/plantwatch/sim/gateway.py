"""The JSON gateway in front of legacy machines, and the defects such gateways really have.

Legacy machines cannot run the edge SDK. A gateway polls them and forwards each reading as a
JSON object (the Reading fields without ``seq``). Old gateways get things wrong now and then;
:class:`GatewayIssues` says how often, per forwarded record. The records carry no mark of what
was done to them: only the counters know, so the stream has to find the defects on its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import astuple, dataclass, fields
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from plantwatch.core.codec import format_ts
from plantwatch.core.errors import ConfigError
from plantwatch.core.kinds import SensorKind
from plantwatch.core.reading import SCHEMA_VERSION, Quality
from plantwatch.sim.plant import SensorSpec

#: Issues injected into single records, in the order their probabilities are stacked.
RECORD_ISSUES: tuple[str, ...] = (
    "bad_unit",
    "future_ts",
    "nan_value",
    "unknown_kind",
    "missing_field",
    "malformed",
)
FUTURE_SHIFT_MS = 86_400_000  # a gateway clock one day ahead
_NO_ISSUE = len(RECORD_ISSUES)


@dataclass(frozen=True, slots=True)
class GatewayIssues:
    """Per-record probabilities of gateway defects on legacy records.

    * ``bad_unit``      — a vibration record sent with unit ``"g"`` (acceleration, not velocity);
      the probability is per *vibration* record.
    * ``future_ts``     — the timestamp is one day ahead.
    * ``nan_value``     — the value is NaN.
    * ``unknown_kind``  — kind ``"torque"``, which plantwatch does not know.
    * ``missing_field`` — ``unit`` or ``value`` is left out.
    * ``malformed``     — the value is the string ``"n/a"``.
    * ``duplicate``     — the record is forwarded a second time, unchanged
      (:meth:`LegacyGateway.pick_duplicates`).

    A record gets at most one of the first six.
    """

    bad_unit: float = 0.002
    future_ts: float = 0.002
    nan_value: float = 0.002
    unknown_kind: float = 0.001
    missing_field: float = 0.001
    malformed: float = 0.001
    duplicate: float = 0.01

    def __post_init__(self) -> None:
        for f in fields(self):
            p = getattr(self, f.name)
            if not 0.0 <= p <= 1.0:
                raise ConfigError(f"gateway issue {f.name} must be a probability 0..1, got {p}")
        if sum(astuple(self)[: len(RECORD_ISSUES)]) > 1.0:
            raise ConfigError("gateway record issue probabilities must add up to at most 1")

    @classmethod
    def none(cls) -> GatewayIssues:
        """A perfect gateway."""
        return cls(*(0.0,) * len(fields(cls)))

    def thresholds(self) -> npt.NDArray[np.float64]:
        """Cumulative probabilities of the record issues, in :data:`RECORD_ISSUES` order."""
        return np.cumsum([getattr(self, name) for name in RECORD_ISSUES])


class LegacyGateway:
    """Turns legacy machines' readings into JSON-style records, defects included.

    Two random streams derived from the simulator seed: one draws two numbers per legacy
    sensor per tick (whether or not a reading is emitted, so chunking never shifts them), the
    other one number per record offered to :meth:`pick_duplicates`.
    """

    def __init__(self, issues: GatewayIssues, *, seed: int) -> None:
        self.issues = issues
        self._cum = issues.thresholds()
        self._issue_rng = np.random.default_rng(np.random.SeedSequence([seed, 0x6A7E]))
        self._dup_rng = np.random.default_rng(np.random.SeedSequence([seed, 0xD0B1]))
        self.duplicates = 0  # records picked for a second send, in total

    def records(
        self,
        ts_ms: npt.NDArray[np.int64],
        values: npt.NDArray[np.float64],
        emit: npt.NDArray[np.bool_],
        sensors: Sequence[tuple[str, SensorSpec]],
    ) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """Records for ticks × legacy sensors where ``emit``, and how many of each issue."""
        draws = self._issue_rng.random((len(ts_ms), len(sensors), 2))
        issue = np.searchsorted(self._cum, draws[..., 0], side="right")
        is_vibration = np.array([s.kind is SensorKind.VIBRATION for _, s in sensors], np.bool_)
        issue[(issue == 0) & ~is_vibration] = _NO_ISSUE
        counts = dict.fromkeys(RECORD_ISSUES, 0)
        stamps = [s + "Z" for s in np.datetime_as_string(ts_ms.astype("datetime64[ms]"), "ms")]
        names = [(m, s.sensor_id, s.kind.value, s.unit) for m, s in sensors]
        ks, js = np.nonzero(emit)
        quality = Quality.GOOD.value
        out: list[dict[str, Any]] = []
        for k, j, value, problem in zip(
            ks.tolist(), js.tolist(), values[ks, js].tolist(), issue[ks, js].tolist(), strict=True
        ):
            machine_id, sensor_id, kind, unit = names[j]
            rec: dict[str, Any] = {
                "machine_id": machine_id,
                "sensor_id": sensor_id,
                "kind": kind,
                "value": value,
                "unit": unit,
                "ts": stamps[k],
                "quality": quality,
                "schema_version": SCHEMA_VERSION,
            }
            if problem != _NO_ISSUE:
                name = RECORD_ISSUES[problem]
                _inject(rec, name, int(ts_ms[k]), float(draws[k, j, 1]))
                counts[name] += 1
            out.append(rec)
        return out, counts

    def pick_duplicates(self, forwarded: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Records to send again unchanged, each picked with probability ``issues.duplicate``.

        Pass the records as forwarded (with the ``seq`` the edge SDK gave them), so that the
        stream sees true duplicates. Deterministic for a seed and a sequence of calls.
        """
        draws = self._dup_rng.random(len(forwarded))
        picked = [
            dict(r) for r, u in zip(forwarded, draws.tolist(), strict=True)
            if u < self.issues.duplicate
        ]  # fmt: skip
        self.duplicates += len(picked)
        return picked


def _inject(rec: dict[str, Any], issue: str, ts_ms: int, u: float) -> None:
    if issue == "bad_unit":
        rec["unit"] = "g"
    elif issue == "future_ts":
        rec["ts"] = format_ts(datetime.fromtimestamp((ts_ms + FUTURE_SHIFT_MS) / 1000.0, UTC))
    elif issue == "nan_value":
        rec["value"] = float("nan")
    elif issue == "unknown_kind":
        rec["kind"] = "torque"
    elif issue == "missing_field":
        del rec["unit" if u < 0.5 else "value"]
    elif issue == "malformed":
        rec["value"] = "n/a"
