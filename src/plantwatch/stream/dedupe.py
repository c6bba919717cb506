"""De-duplication on (machine, sensor, seq), exact, with bounded state.

Per sensor: ``contig`` — every seq up to it has been seen — plus the set of seen seqs above it
(only while there are gaps). The common case, seqs arriving in order, is one vectorised check
per batch; gaps and reordering fall back to a per-*sensor* set update.

Seqs are expected to start at 1 (the edge SDK's do; 0 is accepted too). When a sensor's gaps
span more than ``horizon`` seqs (readings evicted at the edge, a device whose counter starts
high), the state is cut below the oldest seq it still holds (at most ``horizon`` back): seqs at
or below the cut are *stale* — we cannot tell whether they are
duplicates — and become dead letters (``stale_sequence``) rather than being dropped or stored
twice.

After a restart the state is restored from what the store holds (:meth:`restore`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]
_NEW = np.iinfo(np.int64).min


@dataclass(frozen=True, slots=True)
class DedupeResult:
    new: B  # first time seen: process it
    duplicate: B  # seen before (or twice in this batch): drop and count
    stale: B  # older than the sensor's known history: dead letter


class Deduper:
    def __init__(self, *, horizon: int = 100_000) -> None:
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        self.horizon = horizon
        self._contig: I64 = np.zeros(0, np.int64)
        self._floor: I64 = np.zeros(0, np.int64)  # seqs <= floor are stale
        self._extra: dict[int, set[int]] = {}

    def _ensure(self, n: int) -> None:
        if len(self._contig) >= n:
            return
        size = max(n, 2 * len(self._contig), 16)
        for name in ("_contig", "_floor"):
            old = getattr(self, name)
            new = np.full(size, _NEW, np.int64)
            new[: len(old)] = old
            setattr(self, name, new)

    def check(self, sensor: I64, seq: I64) -> DedupeResult:
        """Classify each row and record the new ones as seen."""
        n = len(sensor)
        if n == 0:
            z = np.zeros(0, np.bool_)
            return DedupeResult(z, z.copy(), z.copy())
        self._ensure(int(sensor.max()) + 1)
        order = np.lexsort((seq, sensor))
        s_o, q_o = sensor[order], seq[order]
        repeat_o = np.zeros(n, np.bool_)
        repeat_o[1:] = (s_o[1:] == s_o[:-1]) & (q_o[1:] == q_o[:-1])
        # sensors seen for the first time: nothing seen yet (seqs start at 1, or at 0)
        uniq, starts = np.unique(s_o, return_index=True)
        fresh = self._contig[uniq] == _NEW
        if fresh.any():
            first = np.minimum(q_o[starts[fresh]] - 1, 0)
            self._contig[uniq[fresh]] = first
            self._floor[uniq[fresh]] = first
        contig_o = self._contig[s_o]
        stale_o = ~repeat_o & (q_o <= self._floor[s_o])
        dup_o = repeat_o | (~stale_o & (q_o <= contig_o))
        cand_o = ~dup_o & ~stale_o
        # Fast path: per sensor, candidates are exactly contig+1 .. contig+k and no gaps pending.
        cand_s, cand_q = s_o[cand_o], q_o[cand_o]
        if len(cand_s):
            us, st, cnt = np.unique(cand_s, return_index=True, return_counts=True)
            lo = cand_q[st]
            hi = cand_q[st + cnt - 1]
            contig = self._contig[us]
            no_gaps = (
                np.array([int(u) not in self._extra for u in us], np.bool_)
                if self._extra
                else np.ones(len(us), np.bool_)
            )
            fast = no_gaps & (lo == contig + 1) & (hi - lo + 1 == cnt)
            self._contig[us[fast]] = hi[fast]
            for j in np.flatnonzero(~fast):
                u = int(us[j])
                seqs = cand_q[st[j] : st[j] + cnt[j]]
                known = self._slow(u, seqs)
                if known.any():
                    # seen via the gap set: duplicates after all
                    rows = np.flatnonzero(cand_o & (s_o == u))
                    dup_o[rows[known]] = True
                    cand_o[rows[known]] = False
        inv = np.empty(n, np.int64)
        inv[order] = np.arange(n)
        return DedupeResult(cand_o[inv], dup_o[inv], stale_o[inv])

    def _slow(self, sensor: int, seqs: I64) -> B:
        """Record ``seqs`` (sorted, unique, > contig) for one sensor; True where already seen."""
        extra = self._extra.setdefault(sensor, set())
        known = np.fromiter((int(q) in extra for q in seqs), np.bool_, len(seqs))
        extra.update(int(q) for q in seqs[~known])
        c = int(self._contig[sensor])
        if extra and max(extra) - c > self.horizon:
            # Gaps wider than the horizon will not fill: everything below the oldest seq still
            # held becomes stale, and the state shrinks back to the compact form.
            cut = max(min(extra), max(extra) - self.horizon) - 1
            self._floor[sensor] = max(int(self._floor[sensor]), cut)
            c = max(c, cut)
        self._settle(sensor, c, extra)
        return known

    def _settle(self, sensor: int, contig: int, seen: set[int]) -> None:
        """Fold seen seqs that continue the contiguous run into it; keep the rest as gaps."""
        extra = {q for q in seen if q > contig}
        while contig + 1 in extra:
            contig += 1
            extra.discard(contig)
        self._contig[sensor] = contig
        if extra:
            self._extra[sensor] = extra
        else:
            self._extra.pop(sensor, None)

    def restore(self, sensor: int, *, floor: int, contig: int, seen_above: list[int]) -> None:
        """State of one sensor from the store: seqs ``<= floor`` are stale, ``floor < seq <=
        contig`` all seen, plus ``seen_above``."""
        self._ensure(sensor + 1)
        self._floor[sensor] = floor
        self._settle(sensor, max(contig, floor), set(seen_above))

    def state_size(self) -> int:
        """Seqs held in gap sets (bounded by the horizon per sensor)."""
        return sum(len(s) for s in self._extra.values())
