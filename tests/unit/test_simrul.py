"""Time to failure on a small simulated bearing-wear run (seconds, not minutes)."""

from __future__ import annotations

import numpy as np
import pytest

from plantwatch.evaluate.report import Report
from plantwatch.evaluate.simrul import simulate_histories, simulator_rul

SMALL = {"machines": 8, "wear_minutes": (30.0, 60.0), "rate_hz": 0.2, "window_s": 30.0}


def test_histories_follow_the_wear_physics() -> None:
    h = simulate_histories(5, **SMALL)
    assert len(h.machine) == 8 and len(h.wear_min) == 8
    for r in range(8):
        idx = np.flatnonzero(h.run == r)
        ttf = h.ttf_min[idx]
        assert np.all(np.diff(ttf) == pytest.approx(-0.5))  # 30 s windows, counting down
        assert 0.0 <= ttf[-1] < 0.5  # the history stops at the failure (end of the wear)
        vib = h.values[idx, 0]
        healthy = h.progress[idx] < 0
        assert np.all(np.abs(vib[healthy] - 1.0) < 0.25)  # the ratio to the healthy baseline
        assert 3.5 < vib[-1] < 5.5  # × (1 + 3.5 p²) at p ≈ 1
        temp = h.values[idx, 1]
        assert temp[-1] - np.median(temp[healthy]) > 12.0  # up to +20 °C at the end


def test_predicted_time_to_failure_falls_as_wear_progresses() -> None:
    report = simulator_rul(seed=2, train_plants=2, feature_window=10, **SMALL)
    assert isinstance(report, Report)
    assert len(report.rows) == 8
    cols = list(report.columns)
    p50, p75, p90 = (cols.index(f"pred@{q}") for q in ("50%", "75%", "90%"))
    t50, t90 = cols.index("true TTF@50%"), cols.index("true TTF@90%")
    for row in report.rows:
        assert row[p50] > row[p75] > row[p90]
        assert row[t50] > row[t90] > 0.0
    preds = np.array([[row[p50], row[p75], row[p90]] for row in report.rows])
    trues = np.array([[row[t50], row[cols.index("true TTF@75%")], row[t90]] for row in report.rows])
    wear = np.array([row[cols.index("wear min")] for row in report.rows])
    assert np.all(np.abs(preds - trues) < 0.3 * wear[:, None])
    assert report.summary["RMSE at 50/75/90 % (min)"] < 6.0
