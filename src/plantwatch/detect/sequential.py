"""Streaming scorers for raw time series (the :class:`~plantwatch.detect.base.Sequential` protocol).

Each scorer takes the rows of a series as they arrive, in batches of any size (``update(x)``,
``x`` of shape ``(n, d)``), and gives one score ``>= 0`` per row, larger meaning more anomalous.
State carries over between calls, so one call over a whole series and many calls over its
pieces give the same scores (up to floating-point rounding of running sums). A row with NaN or
inf in any column scores 0 and leaves the state untouched. State is plain NumPy arrays and
floats (picklable); nothing is random. With ``d > 1`` columns the row score is the largest
column score. Each call is vectorised over its rows (linear recursions by ``lfilter``, running
extremes by ``accumulate``, rolling statistics on a ``sliding_window_view`` of the kept history
followed by the new rows).

The scorers:

* :class:`EwmaZ` (``ewma_z``): ``|x - m| / (1.2533 s)`` against an exponentially weighted mean
  ``m`` and mean absolute deviation ``s`` (for a normal variable ``1.2533 E|x - μ| = σ``), both
  taken before the row is seen. Cheap; an outlier inflates ``s`` for a while.
* :class:`MedianZ` (``median_z``): ``|x - median| / scale`` against the median of the last
  ``history`` rows, ``scale = max(1.4826 MAD, (q90 - q10) / 2.563, floor)``. Robust: a spike does
  not move the baseline, and a two-level signal is not flagged at every switch.
* :class:`Cusum` (``cusum``): two-sided CUSUM (Page 1954) of the standardised residuals ``u``
  of a slow EWMA baseline, ``S+ = max(0, S+ + u - k)``, ``S- = max(0, S- - u - k)``; the score
  is ``max(S+, S-)``. It accumulates small persistent shifts that a z-score misses.
* :class:`Likelihood` (``likelihood``): NuPIC's *anomaly likelihood* (Ahmad et al. 2017) over a
  raw score, plus a spatial-novelty check. The raw score is a robust z-score of the value and of
  its first difference against the last ``history`` rows, squashed into ``[0, 1]``; the
  likelihood asks how unusual the mean raw score of the last ``short`` rows is compared with the
  distribution (mean, standard deviation) of that mean over the last ``long`` rows, and reports
  ``log(1 - L) / log(1e-10)`` (0.5 at ``L = 0.99999``). A value outside the range seen so far
  widened by 5 % on each side scores 1. Finally a row only keeps its score if it exceeds every
  score of the preceding ``quiet`` rows: an alarm fires once when an episode begins instead of
  at every row of it (a streaming debounce).

  **Seasonality.** Given ``period`` (rows per day, e.g. 288 at 5-minute steps; 0, the default,
  means unknown), the raw score stops judging the level and first difference once a day of data
  has arrived and judges the *seasonal differences* instead: ``v_t - v_{t-L}`` for
  ``L = period`` (same time yesterday) and ``L = 7 period`` (same time last week, once a week of
  data is in), each as a robust z against its own last ``history`` values. The row's z is the
  smaller of the two: a row is unusual only if it is unlike yesterday *and* unlike last week,
  so a regular weekday/weekend swing is not flagged, while a missing daily peak or a flattened
  day is. The scorer never sees timestamps: the caller derives ``period`` from the sampling
  interval (``plantwatch.evaluate.nab`` does so from the median timestamp spacing).

  How the settings were chosen, plainly: the NuPIC-derived defaults (``short``, ``long``,
  ``learn``, ``alarm`` 0.5) come from the method's published description; the rest
  (``z_scale``, ``quiet``, ``spatial``, the seasonal lags and the way the seasonal z replaces
  the plain one) were compared on the NAB corpus, so NAB's fixed-threshold figure for this
  scorer is optimistic (see :mod:`plantwatch.evaluate.nab`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from plantwatch.detect.base import F64

_BLOCK = 4096  # rows per block when a rolling statistic materialises (block, history) copies


def _rows(x: F64) -> tuple[F64, np.ndarray[Any, np.dtype[np.bool_]]]:
    """``x`` as a 2-D float array and the mask of rows that are finite in every column."""
    a = np.asarray(x, np.float64)
    if a.ndim == 1:
        a = a.reshape(-1, 1)
    ok = np.isfinite(a).all(axis=1) if a.shape[1] else np.zeros(len(a), bool)
    return a, np.asarray(ok, np.bool_)


def _ewm(x: F64, alpha: float, prev: F64) -> F64:
    """``y_t = alpha x_t + (1 - alpha) y_{t-1}`` down the rows, starting from ``prev``."""
    from scipy.signal import lfilter  # type: ignore[import-untyped]

    if len(x) == 0:
        return np.zeros_like(x)
    zi = ((1.0 - alpha) * prev)[None, :]
    y, _ = lfilter([alpha], [1.0, alpha - 1.0], x, axis=0, zi=zi)
    return np.asarray(y, np.float64)


def _quantiles(win: F64, qs: tuple[float, ...]) -> list[F64]:
    """Quantiles (linear interpolation) along the last axis of ``win``, NaN ignored."""
    w = win.shape[-1]
    if not np.isnan(win).any():
        pos = [q * (w - 1) for q in qs]
        kth = sorted(
            {int(np.floor(p)) for p in pos} | {min(int(np.floor(p)) + 1, w - 1) for p in pos}
        )
        part = np.partition(win, kth, axis=-1)
        return [
            part[..., int(np.floor(p))] * (1.0 - (p - np.floor(p)))
            + part[..., min(int(np.floor(p)) + 1, w - 1)] * (p - np.floor(p))
            for p in pos
        ]
    srt = np.sort(win, axis=-1)  # NaN sort last
    count = np.isfinite(srt).sum(axis=-1)
    top = np.maximum(count - 1, 0)
    out = []
    for q in qs:
        pos_ = q * top
        lo = np.floor(pos_).astype(np.int64)
        hi = np.minimum(lo + 1, top)
        frac = pos_ - lo
        vlo = np.take_along_axis(srt, lo[..., None], axis=-1)[..., 0]
        vhi = np.take_along_axis(srt, hi[..., None], axis=-1)[..., 0]
        out.append(np.where(count > 0, vlo * (1.0 - frac) + vhi * frac, np.nan))
    return out


def _rolling(hist: F64, new: F64) -> list[tuple[slice, F64]]:
    """Blocks of windows over the rows before each new row: for each block ``(rows, win)``,
    ``win[t]`` (shape ``(d, len(hist))``) holds the ``len(hist)`` rows before new row
    ``rows.start + t``, from ``hist`` followed by ``new``."""
    w, n = len(hist), len(new)
    full = np.concatenate([hist, new[:-1]])
    out = []
    for b in range(0, n, _BLOCK):
        e = min(n, b + _BLOCK)
        out.append((slice(b, e), sliding_window_view(full[b : e + w - 1], w, axis=0)))
    return out


def _push(hist: F64, new: F64) -> F64:
    """The last ``len(hist)`` rows of ``hist`` followed by ``new``."""
    w = len(hist)
    if w == 0:
        return hist
    return np.concatenate([hist, new])[-w:].copy()


def _scatter(ok: np.ndarray[Any, np.dtype[np.bool_]], valid_scores: F64) -> F64:
    out = np.zeros(len(ok), np.float64)
    out[ok] = np.nan_to_num(valid_scores, nan=0.0, posinf=0.0, neginf=0.0)
    return out


class _Columns:
    """Lazily sized per-column state: the number of columns is fixed by the first call."""

    d: int = -1

    def _check(self, a: F64) -> bool:
        if a.shape[1] == 0:
            return False
        if self.d < 0:
            self.d = a.shape[1]
            self._init(a.shape[1])
        elif a.shape[1] != self.d:
            raise ValueError(f"{type(self).__name__} saw {self.d} columns, now {a.shape[1]}")
        return True

    def _init(self, d: int) -> None:
        raise NotImplementedError


class EwmaZ(_Columns):
    name = "ewma_z"

    def __init__(self, *, alpha: float = 0.02, warmup: int = 50, alarm: float = 6.0) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"need 0 < alpha <= 1, got {alpha}")
        self.alpha, self.warmup, self.alarm = alpha, warmup, alarm
        self.seen = 0
        self._m: F64 = np.zeros(0)
        self._s: F64 = np.zeros(0)

    def _init(self, d: int) -> None:
        self._m, self._s = np.zeros(d), np.zeros(d)

    def update(self, x: F64) -> F64:
        a, ok = _rows(x)
        if not ok.any() or not self._check(a):
            return np.zeros(len(a))
        v = a[ok]
        z = self._z(v)
        return _scatter(ok, z.max(axis=1))

    def _z(self, v: F64) -> F64:
        """Per-column z of the valid rows ``v`` (and update the state)."""
        if self.seen == 0:
            self._m = v[0].copy()
        m_prev, s_prev, self._m, self._s = _baseline(v, self.alpha, self._m, self._s, self.seen)
        dev = np.abs(v - m_prev)
        floor = 1e-9 * (1.0 + np.abs(m_prev))
        z = dev / np.maximum(1.2533 * s_prev, floor)
        z[self.seen + np.arange(len(v)) < self.warmup] = 0.0
        self.seen += len(v)
        return z


class MedianZ(_Columns):
    name = "median_z"

    def __init__(
        self, *, history: int = 288, warmup: int = 30, alarm: float = 8.0, rel_floor: float = 1e-3
    ) -> None:
        if not 1 <= warmup <= history:
            raise ValueError(f"need 1 <= warmup <= history, got {warmup}, {history}")
        self.history, self.warmup, self.alarm, self.rel_floor = history, warmup, alarm, rel_floor
        self.seen = 0
        self._hist: F64 = np.zeros((history, 0))

    def _init(self, d: int) -> None:
        self._hist = np.full((self.history, d), np.nan)

    def update(self, x: F64) -> F64:
        a, ok = _rows(x)
        if not ok.any() or not self._check(a):
            return np.zeros(len(a))
        return _scatter(ok, self._z(a[ok]).max(axis=1))

    def _z(self, v: F64) -> F64:
        shape = v.shape
        med, q10, q90, mad = (np.full(shape, np.nan) for _ in range(4))
        for rows, win in _rolling(self._hist, v):
            med[rows], q10[rows], q90[rows] = _quantiles(win, (0.5, 0.1, 0.9))
            (mad[rows],) = _quantiles(np.abs(win - med[rows][..., None]), (0.5,))
        floor = np.maximum(self.rel_floor * np.abs(med), 1e-9)
        scale = np.maximum(np.maximum(1.4826 * mad, (q90 - q10) / 2.563), floor)
        with np.errstate(invalid="ignore"):
            z = np.abs(v - med) / scale
        age = self.seen + np.arange(len(v))
        z[age < self.warmup] = 0.0
        self._hist = _push(self._hist, v)
        self.seen += len(v)
        return np.asarray(np.nan_to_num(z, nan=0.0), np.float64)


class Cusum(_Columns):
    name = "cusum"

    def __init__(
        self,
        *,
        alpha: float = 0.01,
        k: float = 0.5,
        clip: float = 4.0,
        warmup: int = 50,
        alarm: float = 8.0,
    ) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"need 0 < alpha <= 1, got {alpha}")
        self.alpha, self.k, self.clip, self.warmup, self.alarm = alpha, k, clip, warmup, alarm
        self.seen = 0
        self._m: F64 = np.zeros(0)
        self._s: F64 = np.zeros(0)
        self._pos: F64 = np.zeros(0)
        self._neg: F64 = np.zeros(0)

    def _init(self, d: int) -> None:
        self._m, self._s = np.zeros(d), np.zeros(d)
        self._pos, self._neg = np.zeros(d), np.zeros(d)

    def update(self, x: F64) -> F64:
        a, ok = _rows(x)
        if not ok.any() or not self._check(a):
            return np.zeros(len(a))
        v = a[ok]
        if self.seen == 0:
            self._m = v[0].copy()
        mp, sp, self._m, self._s = _baseline(v, self.alpha, self._m, self._s, self.seen)
        scale = np.maximum(1.2533 * sp, 1e-9 * (1.0 + np.abs(mp)))
        u = np.clip((v - mp) / scale, -self.clip, self.clip)
        u[self.seen + np.arange(len(v)) < self.warmup] = 0.0
        pos = _cusum(u - self.k, self._pos)
        neg = _cusum(-u - self.k, self._neg)
        self._pos, self._neg = pos[-1].copy(), neg[-1].copy()
        self.seen += len(v)
        return _scatter(ok, np.maximum(pos, neg).max(axis=1))


def _baseline(v: F64, alpha: float, m0: F64, s0: F64, seen: int) -> tuple[F64, F64, F64, F64]:
    """EWMA mean and mean absolute deviation before each row of ``v`` (``m_prev``,
    ``s_prev``), and after the last row (the new state). ``seen`` rows came before ``v``; the
    deviation starts at 0, so ``s_prev`` is divided by ``1 - (1 - alpha)^age`` (the weight it
    has gathered so far) to be unbiased while it warms up."""
    m = _ewm(v, alpha, m0)
    m_prev = np.concatenate([m0[None, :], m[:-1]])
    s = _ewm(np.abs(v - m_prev), alpha, s0)
    s_prev = np.concatenate([s0[None, :], s[:-1]])
    age = (seen + np.arange(len(v), dtype=np.float64))[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        gathered = -np.expm1(np.log1p(-alpha) * np.maximum(age - 1.0, 0.0))
        s_prev = np.where(gathered > 0, s_prev / gathered, 0.0) if alpha < 1 else s_prev
    return m_prev, s_prev, m[-1].copy(), s[-1].copy()


def _cusum(d: F64, s0: F64) -> F64:
    """``S_t = max(0, S_{t-1} + d_t)`` from ``S_{-1} = s0``, vectorised:
    ``S_t = C_t - min(-s0, min_{j<=t} C_j)`` with ``C`` the running sum of ``d``."""
    c = np.cumsum(d, axis=0)
    low = np.minimum(np.minimum.accumulate(c, axis=0), -s0[None, :])
    return np.maximum(c - low, 0.0)


def _window_sums(hist: F64, new: F64) -> tuple[F64, F64, F64]:
    """For each new row, the sum, sum of squares and count of the finite values among the
    ``len(hist)`` values before it (``hist`` followed by ``new``; 1-D)."""
    w = len(hist)
    full = np.concatenate([hist, new])
    fin = np.isfinite(full)
    val = np.where(fin, full, 0.0)
    c1 = np.concatenate([[0.0], np.cumsum(val)])
    c2 = np.concatenate([[0.0], np.cumsum(val * val)])
    cn = np.concatenate([[0], np.cumsum(fin)])
    t = w + np.arange(len(new))  # index of the new row in ``full``; window = [t - w, t)
    return c1[t] - c1[t - w], c2[t] - c2[t - w], (cn[t] - cn[t - w]).astype(np.float64)


def _rolling_max(hist: F64, new: F64) -> F64:
    """For each new row, the max of the ``len(hist)`` values before it (1-D, NaN as -inf)."""
    w = len(hist)
    full = np.nan_to_num(np.concatenate([hist, new]), nan=-np.inf)
    out = np.empty(len(new))
    for b in range(0, len(new), _BLOCK * 4):
        e = min(len(new), b + _BLOCK * 4)
        out[b:e] = sliding_window_view(full[b : e + w - 1], w).max(axis=1)
    return out


class Likelihood(_Columns):
    name = "likelihood"

    def __init__(
        self,
        *,
        history: int = 1000,
        z_scale: float = 4.0,
        short: int = 10,
        long: int = 8640,
        learn: int = 288,
        spatial: float = 0.05,
        quiet: int = 50,
        alarm: float = 0.5,
        period: int = 0,
        lags: tuple[int, ...] = (1, 7),
    ) -> None:
        if not 1 <= short <= long:
            raise ValueError(f"need 1 <= short <= long, got {short}, {long}")
        if period < 0:
            raise ValueError(f"need period >= 0, got {period}")
        self.z_scale, self.short, self.long, self.learn = z_scale, short, long, learn
        self.spatial, self.quiet, self.alarm = spatial, quiet, alarm
        self.period = period
        self._value = MedianZ(history=history, warmup=min(30, history))
        self._diff = MedianZ(history=history, warmup=min(30, history))
        self.lags = tuple(period * k for k in lags) if period > 0 else ()
        self._season = [MedianZ(history=history, warmup=min(30, history)) for _ in self.lags]
        self._lagbuf: F64 = np.zeros((max(self.lags, default=0), 0))
        self.seen = 0
        self._last: F64 = np.zeros(0)
        self._lo: F64 = np.zeros(0)
        self._hi: F64 = np.zeros(0)
        self._raw: F64 = np.full(max(short - 1, 1), np.nan)
        self._avg: F64 = np.full(long, np.nan)
        self._out: F64 = np.full(max(quiet, 1), np.nan)

    def _init(self, d: int) -> None:
        self._last = np.zeros(d)
        self._lo, self._hi = np.full(d, np.inf), np.full(d, -np.inf)
        for inner in (self._value, self._diff, *self._season):
            inner._check(np.zeros((0, d)))
        self._lagbuf = np.full((max(self.lags, default=0), d), np.nan)

    def update(self, x: F64) -> F64:
        a, ok = _rows(x)
        if not ok.any() or not self._check(a):
            return np.zeros(len(a))
        v = a[ok]
        n = len(v)
        age = self.seen + np.arange(n)
        # raw score in [0, 1]: robust z of the value and of its first difference
        diff = np.diff(v, axis=0, prepend=(v[:1] if self.seen == 0 else self._last[None, :]))
        z = np.maximum(self._value._z(v), self._diff._z(diff))
        if self.lags:
            z = self._seasonal(v, z, age)
        z = z.max(axis=1)
        raw = np.tanh(z / self.z_scale)
        # short-term mean of the raw score, judged against its own long-term distribution
        k = self.short
        rbuf = np.concatenate([self._raw[-(k - 1) :] if k > 1 else np.zeros(0), raw])
        cs = np.concatenate([[0.0], np.cumsum(np.nan_to_num(rbuf))])
        cnt = np.concatenate([[0], np.cumsum(np.isfinite(rbuf))])
        hi_ = np.arange(k, len(rbuf) + 1) if k > 1 else np.arange(1, n + 1)
        avg = (cs[hi_] - cs[hi_ - k]) / np.maximum(cnt[hi_] - cnt[hi_ - k], 1)
        s1, s2, c = _window_sums(self._avg, avg)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.maximum(s1 / c, 0.03)
            var = np.maximum(s2 / c - (s1 / c) ** 2, 0.0003)
        tail = _upper_tail((avg - mean) / np.sqrt(var))
        loglik = np.clip(np.log(1.0000000001 - (1.0 - tail)) / np.log(1e-10), 0.0, 1.0)
        loglik[(age < self.learn) | (c < 1)] = 0.0
        # spatial novelty: outside the range seen so far, widened by ``spatial`` on each side
        lo = np.minimum(np.minimum.accumulate(v, axis=0), self._lo[None, :])
        hi = np.maximum(np.maximum.accumulate(v, axis=0), self._hi[None, :])
        lo_prev = np.concatenate([self._lo[None, :], lo[:-1]])
        hi_prev = np.concatenate([self._hi[None, :], hi[:-1]])
        with np.errstate(invalid="ignore"):
            tol = self.spatial * (hi_prev - lo_prev)
            novel = ((v > hi_prev + tol) | (v < lo_prev - tol)) & (hi_prev > lo_prev)
        score = np.where(novel.any(axis=1) & (age >= self.learn), 1.0, loglik)
        # debounce: a row keeps its score only above every score of the ``quiet`` rows before
        if self.quiet > 0:
            keep = score > _rolling_max(self._out, score)
            out = np.where(keep, score, 0.0)
            self._out = _push(self._out, score)
        else:
            out = score
        self._last = v[-1].copy()
        self._lagbuf = _push(self._lagbuf, v)
        self._lo, self._hi = lo[-1].copy(), hi[-1].copy()
        self._raw = _push(self._raw, raw)
        self._avg = _push(self._avg, avg)
        self.seen += n
        return _scatter(ok, out)

    def _seasonal(self, v: F64, z: F64, age: np.ndarray[Any, np.dtype[np.int64]]) -> F64:
        """Per-column z of the rows ``v`` once a season is known: for each lag ``L`` of
        :attr:`lags`, the robust z of the seasonal difference ``v_t - v_{t-L}`` against its own
        recent history; the smallest over the lags that are available (a row is only unusual
        if it is unlike yesterday *and* unlike the same hour last week). Rows younger than the
        shortest lag keep ``z`` (value and first difference)."""
        full = np.concatenate([self._lagbuf, v])
        m = len(self._lagbuf)
        zs = []
        for lag, inner in zip(self.lags, self._season, strict=True):
            zl = np.full_like(z, np.inf)
            i = np.flatnonzero(age >= lag)  # a suffix of the rows: ages only grow
            if len(i):
                zl[i] = inner._z(v[i] - full[m + i - lag])
            zs.append(zl)
        zmin = np.min(zs, axis=0)
        return np.asarray(np.where(np.isfinite(zmin), zmin, z), np.float64)


def _upper_tail(z: F64) -> F64:
    """``P(Z > z)`` for a standard normal ``Z``."""
    from scipy.special import ndtr  # type: ignore[import-untyped]

    return np.asarray(ndtr(-np.nan_to_num(z, nan=0.0)), np.float64)


#: The streaming scorers by name, built with their defaults.
SEQUENTIAL: dict[str, type[EwmaZ] | type[MedianZ] | type[Cusum] | type[Likelihood]] = {
    c.name: c for c in (EwmaZ, MedianZ, Cusum, Likelihood)
}
DEFAULT_DETECTOR = Likelihood.name


def make_sequential(name: str, **kwargs: Any) -> EwmaZ | MedianZ | Cusum | Likelihood:
    """A fresh streaming scorer ``name`` (see :data:`SEQUENTIAL`)."""
    try:
        cls = SEQUENTIAL[name]
    except KeyError:
        raise ValueError(
            f"unknown streaming detector {name!r}; known: {sorted(SEQUENTIAL)}"
        ) from None
    return cls(**kwargs)
