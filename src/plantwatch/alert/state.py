"""Alert instances per (rule, sensor), vectorised: normal → pending → firing → recovering → normal.

As in Grafana alerting: a condition that holds makes an instance *pending*; once it has held for
the rule's ``for`` it *fires*; when it stops holding, a firing instance is *recovering* for
``keep_firing_for`` (and fires again if the condition returns) before it goes back to *normal*
(the event says ``resolved``). While firing, a higher severity level escalates the instance
(a ``firing`` event with the new severity). Only transitions produce Python objects (events).

Evaluated once per closed event-time window: a condition that holds in a window has held since
the window's start. ``enter`` is the severity rank a window breaches (0: none); ``hold`` says
whether an active instance's condition still holds (the band widened by hysteresis).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from plantwatch.alert.rules import Rule, check_unique

I8 = npt.NDArray[np.int8]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]
UNSET = np.iinfo(np.int64).min

NORMAL, PENDING, FIRING, RECOVERING = 0, 1, 2, 3
STATES: tuple[str, ...] = ("normal", "pending", "firing", "recovering")
STATE_CODE: dict[str, int] = {s: i for i, s in enumerate(STATES)}


@dataclass(frozen=True, slots=True)
class Transition:
    """A rule instance changed state (or escalated). ``sensor`` is the stream's sensor index;
    ``state`` is ``resolved`` when a firing instance returns to normal."""

    rule: Rule
    sensor: int
    state: str  # pending | firing | recovering | resolved | normal (a pending one gave up)
    previous: str
    ts_ms: int
    active_since_ms: int
    level: int  # severity rank (rules.SEVERITY_RANK)
    value: float
    threshold: float


@dataclass(frozen=True, slots=True)
class Instance:
    """One non-normal instance, for persistence and restore."""

    rule: str
    sensor: int
    state: str
    active_since_ms: int
    clear_since_ms: int
    level: int


class _RuleState:
    def __init__(self) -> None:
        self.state = np.zeros(0, np.int8)
        self.active_since: I64 = np.zeros(0, np.int64)
        self.clear_since: I64 = np.zeros(0, np.int64)
        self.level = np.zeros(0, np.int8)

    def ensure(self, n: int) -> None:
        if len(self.state) >= n:
            return
        size = max(n, 2 * len(self.state), 16)
        for name, fill in (("state", NORMAL), ("active_since", UNSET), ("clear_since", UNSET)):
            old = getattr(self, name)
            new = np.full(size, fill, dtype=old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)
        lv = np.zeros(size, np.int8)
        lv[: len(self.level)] = self.level
        self.level = lv


class AlertStates:
    def __init__(self, rules: Sequence[Rule]) -> None:
        check_unique(list(rules))
        self.rules = tuple(rules)
        self._state = {r.name: _RuleState() for r in rules}

    def evaluate(
        self,
        rule: Rule,
        *,
        sensor: I64,
        start_ms: I64,
        end_ms: I64,
        enter: I8,
        hold: B,
        value: F64,
        threshold: F64,
    ) -> list[Transition]:
        """Advance the instances of ``rule`` for the given windows (one row per sensor)."""
        if len(sensor) == 0:
            return []
        st = self._state[rule.name]
        st.ensure(int(sensor.max()) + 1)
        old = st.state[sensor]
        act = st.active_since[sensor].copy()
        clr = st.clear_since[sensor].copy()
        lvl = st.level[sensor].astype(np.int8)
        was_active = (old == FIRING) | (old == RECOVERING)
        breach = enter > 0
        cond = np.where(was_active, breach | hold, breach)
        new = old.copy()

        # normal / pending
        starts = (old == NORMAL) & cond
        act = np.where(starts, start_ms, act)
        gives_up = (old == PENDING) & ~cond
        pend = (old == PENDING) | starts
        lvl = np.where(pend & cond, np.maximum(lvl, enter), lvl).astype(np.int8)
        fires = pend & cond & (end_ms - act >= round(rule.for_s * 1000))
        new = np.where(starts & ~fires, PENDING, new)
        new = np.where(fires, FIRING, new)
        new = np.where(gives_up, NORMAL, new)

        # firing / recovering
        escalates = was_active & cond & (enter > lvl)
        back = (old == RECOVERING) & cond
        lvl = np.where(was_active & cond, np.maximum(lvl, enter), lvl).astype(np.int8)
        clr = np.where(was_active & cond, UNSET, clr)
        clear_starts = (old == FIRING) & ~cond
        clr = np.where(clear_starts, start_ms, clr)
        clearing = was_active & ~cond
        resolves = clearing & (end_ms - clr >= round(rule.keep_firing_for_s * 1000))
        new = np.where(back, FIRING, new)
        new = np.where(clear_starts & ~resolves, RECOVERING, new)
        new = np.where(resolves, NORMAL, new)

        out: list[Transition] = []
        changed = (new != old) | escalates
        for i in np.flatnonzero(changed):
            name = "resolved" if resolves[i] else STATES[int(new[i])]
            out.append(
                Transition(
                    rule=rule,
                    sensor=int(sensor[i]),
                    state=name,
                    previous=STATES[int(old[i])],
                    ts_ms=int(end_ms[i]),
                    active_since_ms=int(act[i]),
                    level=int(lvl[i]) if lvl[i] > 0 else int(rule.top_rank),
                    value=float(value[i]),
                    threshold=float(threshold[i]),
                )
            )
        back_to_normal = new == NORMAL
        st.state[sensor] = new
        st.active_since[sensor] = np.where(back_to_normal, UNSET, act)
        st.clear_since[sensor] = np.where(back_to_normal | (new != RECOVERING), UNSET, clr)
        st.level[sensor] = np.where(back_to_normal, 0, lvl)
        return out

    # -- persistence -----------------------------------------------------------------------------

    def instances(self) -> list[Instance]:
        """Every instance that is not normal."""
        out = []
        for name, st in self._state.items():
            for i in np.flatnonzero(st.state != NORMAL):
                out.append(
                    Instance(
                        name,
                        int(i),
                        STATES[int(st.state[i])],
                        int(st.active_since[i]),
                        int(st.clear_since[i]),
                        int(st.level[i]),
                    )
                )
        return out

    def restore(self, inst: Instance) -> bool:
        """Put one instance back (after a restart). False for a rule that no longer exists."""
        st = self._state.get(inst.rule)
        if st is None or inst.state not in STATE_CODE:
            return False
        st.ensure(inst.sensor + 1)
        code = STATE_CODE[inst.state]
        st.state[inst.sensor] = code
        st.active_since[inst.sensor] = inst.active_since_ms
        st.clear_since[inst.sensor] = inst.clear_since_ms if code == RECOVERING else UNSET
        st.level[inst.sensor] = inst.level
        return True

    def firing(self) -> dict[str, I64]:
        """Sensor indexes with a firing (or recovering) instance, per rule."""
        return {
            name: np.flatnonzero((st.state == FIRING) | (st.state == RECOVERING))
            for name, st in self._state.items()
        }
