"""Alert instances per (rule, sensor): inactive → pending → firing → resolved, vectorised.

Evaluated once per closed window in event time. A condition that holds in a window has held since
the window's start; it fires once it has held for the rule's ``for`` duration, and resolves once
it has been clear for ``resolve_after``. Only transitions produce Python objects (events).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from plantwatch.alert.rules import Rule

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
UNSET = np.iinfo(np.int64).min


@dataclass(frozen=True, slots=True)
class Transition:
    """A rule instance changed state. ``sensor`` is the stream's sensor index."""

    rule: Rule
    sensor: int
    state: str  # "firing" | "resolved"
    ts_ms: int
    active_since_ms: int
    level: int
    value: float
    threshold: float
    score: float


class _RuleState:
    def __init__(self) -> None:
        self.active_since: I64 = np.zeros(0, np.int64)
        self.clear_since: I64 = np.zeros(0, np.int64)
        self.firing = np.zeros(0, np.bool_)
        self.level = np.zeros(0, np.int8)

    def ensure(self, n: int) -> None:
        if len(self.firing) >= n:
            return
        size = max(n, 2 * len(self.firing), 16)
        for name, fill in (
            ("active_since", UNSET),
            ("clear_since", UNSET),
            ("firing", False),
            ("level", 0),
        ):
            old = getattr(self, name)
            new = np.full(size, fill, dtype=old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)


class AlertStates:
    def __init__(self, rules: Sequence[Rule]) -> None:
        names = [r.name for r in rules]
        if len(set(names)) != len(names):
            raise ValueError(f"rule names must be unique: {names}")
        self.rules = tuple(rules)
        self._state = {r.name: _RuleState() for r in rules}

    def rules_for(self, detector: str) -> list[Rule]:
        return [r for r in self.rules if r.detector == detector]

    def evaluate(
        self,
        rule: Rule,
        *,
        sensor: I64,
        start_ms: I64,
        end_ms: I64,
        level: npt.NDArray[np.int8],
        value: F64,
        threshold: F64,
        score: F64,
    ) -> list[Transition]:
        """Advance every instance of ``rule`` for the given windows (one per sensor)."""
        if len(sensor) == 0:
            return []
        st = self._state[rule.name]
        st.ensure(int(sensor.max()) + 1)
        cond = level >= rule.min_level
        active = st.active_since[sensor]
        firing = st.firing[sensor]
        clear = st.clear_since[sensor]
        # pending starts when the condition first holds
        active = np.where(cond & (active == UNSET), start_ms, active)
        # a pending instance that is no longer true goes back to inactive
        active = np.where(~cond & ~firing, UNSET, active)
        for_ms = round(rule.for_s * 1000)
        fires = cond & ~firing & (active != UNSET) & (end_ms - active >= for_ms)
        clear = np.where(cond, UNSET, np.where(firing & (clear == UNSET), start_ms, clear))
        resolves = (
            firing
            & ~cond
            & (clear != UNSET)
            & (end_ms - clear >= round(rule.resolve_after_s * 1000))
        )
        new_level = np.where(cond, np.maximum(st.level[sensor], level), st.level[sensor])
        out: list[Transition] = []
        for i in np.flatnonzero(fires | resolves):
            out.append(
                Transition(
                    rule=rule,
                    sensor=int(sensor[i]),
                    state="firing" if fires[i] else "resolved",
                    ts_ms=int(end_ms[i]),
                    active_since_ms=int(active[i]),
                    level=int(new_level[i] if fires[i] else st.level[sensor[i]]),
                    value=float(value[i]),
                    threshold=float(threshold[i]),
                    score=float(score[i]),
                )
            )
        firing = (firing | fires) & ~resolves
        active = np.where(resolves, UNSET, active)
        clear = np.where(resolves, UNSET, clear)
        new_level = np.where(resolves | (~firing & ~cond), 0, new_level)
        st.active_since[sensor] = active
        st.clear_since[sensor] = clear
        st.firing[sensor] = firing
        st.level[sensor] = new_level
        return out

    def firing(self) -> dict[str, I64]:
        """Sensor indexes with a firing instance, per rule."""
        return {name: np.flatnonzero(st.firing) for name, st in self._state.items()}
