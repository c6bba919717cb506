"""The NAB scorer on hand-checked cases (no dataset needed).

One file of 100 rows, probation ``min(floor(0.15 * 100), 750) = 15`` rows, one window on rows
40..49 (width 10), standard profile ``A_TP = 1, A_FP = 0.11, A_FN = 1``. The expected values are
written out with NAB's formulas: ``σ(y) = 2 / (1 + exp(5 y)) - 1``; a detection at row ``i`` in
the window is worth ``σ(-(49 - i + 1) / 10) / σ(-1)``; a false positive at row ``i`` after it
``0.11 * σ(|i - 49| / 9)`` (``-0.11`` with no window before or more than 3 widths after).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from plantwatch.detect.sequential import EwmaZ, Likelihood
from plantwatch.evaluate.nab import (
    Weights,
    make_detector,
    normalised,
    rows_per_day,
    score_file,
    sweep_values,
    threshold_sweep,
)

STANDARD = Weights(tp=1.0, fp=0.11, fn=1.0)
N = 100
WINDOW = (40, 49)


def sigma(y: float) -> float:
    return -1.0 if y >= 3.0 else 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


def tp(i: int) -> float:
    return sigma(-(49 - i + 1) / 10) / sigma(-1.0)


def score_of(*rows: int, windows: list[tuple[int, int]] | None = None) -> float:
    sw = sweep_values(N, [WINDOW] if windows is None else windows, STANDARD)
    det = np.zeros(N, bool)
    det[list(rows)] = True
    return score_file(sw, det).score


def test_detection_at_the_left_edge_is_worth_a_full_true_positive() -> None:
    assert tp(40) == pytest.approx(1.0)
    assert score_of(40) == pytest.approx(1.0)


def test_detection_in_the_middle_and_at_the_right_edge() -> None:
    # row 45: y = -(49 - 45 + 1) / 10 = -0.5; row 49: y = -0.1
    assert score_of(45) == pytest.approx(sigma(-0.5) / sigma(-1.0))
    assert score_of(45) == pytest.approx(0.8482836 / 0.9866143, rel=1e-6)
    assert score_of(49) == pytest.approx(sigma(-0.1) / sigma(-1.0))
    assert 0 < score_of(49) < score_of(45) < score_of(40)


def test_only_the_earliest_detection_in_a_window_counts() -> None:
    assert score_of(41, 45, 49) == pytest.approx(tp(41))
    assert score_of(41, 45, 49) == pytest.approx(score_of(41))


def test_no_detection_costs_a_false_negative() -> None:
    assert score_of() == pytest.approx(-1.0)


def test_false_positive_before_the_first_window_costs_the_full_weight() -> None:
    assert score_of(30) == pytest.approx(-0.11 - 1.0)
    assert score_of(30, 40) == pytest.approx(-0.11 + 1.0)


def test_false_positive_after_a_window_is_scaled_by_its_distance() -> None:
    # row 52: y = |52 - 49| / (10 - 1) = 1/3; row 90: y = 41/9 > 3 -> full cost
    assert score_of(40, 52) == pytest.approx(1.0 + 0.11 * sigma(1 / 3))
    assert score_of(40, 90) == pytest.approx(1.0 - 0.11)
    assert -0.11 < 0.11 * sigma(1 / 3) < 0
    # every false positive counts
    assert score_of(40, 52, 90) == pytest.approx(1.0 + 0.11 * sigma(1 / 3) - 0.11)


def test_probation_rows_and_windows_are_ignored() -> None:
    # a detection in the first 15 rows is not a false positive
    assert score_of(3, 14) == pytest.approx(-1.0)
    assert score_of(15) == pytest.approx(-0.11 - 1.0)
    # a window entirely in probation is neither a miss nor a hit
    sw = sweep_values(N, [(5, 8)], STANDARD)
    assert sw.n_windows == 0 and sw.null == 0.0
    assert score_file(sw, np.zeros(N, bool)).score == 0.0


def test_corpus_normalisation_of_null_and_perfect_detectors() -> None:
    windows = [[WINDOW], [(20, 29), (60, 79)]]  # 3 windows in 2 files
    sweeps = [sweep_values(N, w, STANDARD) for w in windows]
    null = sum(s.null for s in sweeps)
    perfect = sum(s.perfect for s in sweeps)
    assert (null, perfect) == (-3.0, 3.0)
    # the perfect detector fires at each window's left edge and nowhere else
    perfect_scores = []
    for w in windows:
        sc = np.zeros(N)
        sc[[left for left, _ in w]] = 1.0
        perfect_scores.append(sc)
    thresholds, totals = threshold_sweep(sweeps, perfect_scores)
    best = int(np.argmax(totals))
    assert totals[best] == pytest.approx(3.0)
    assert normalised(totals[best], null, perfect) == pytest.approx(100.0)
    assert thresholds[0] == np.inf and totals[0] == pytest.approx(null)
    assert normalised(totals[0], null, perfect) == pytest.approx(0.0)
    # file 1: its window hit at row 45; file 2: both windows missed and a false positive at
    # row 99, y = |99 - 79| / (20 - 1) = 20/19 after the window 60..79
    sc = [np.zeros(N), np.zeros(N)]
    sc[0][45] = 1.0
    sc[1][99] = 1.0
    raw = tp(45) - 1.0 + (-1.0) + 0.11 * sigma(20 / 19)
    direct = sum(score_file(s, x >= 0.5).score for s, x in zip(sweeps, sc, strict=True))
    assert direct == pytest.approx(raw)
    assert normalised(direct, null, perfect) == pytest.approx(100 * (raw + 3) / 6)


def test_threshold_sweep_matches_scoring_at_every_threshold() -> None:
    rng = np.random.default_rng(0)
    windows = [[WINDOW], [(20, 29), (60, 79)], []]
    sweeps = [sweep_values(N, w, STANDARD) for w in windows]
    scores = [np.round(rng.random(N), 2) for _ in windows]  # ties on purpose
    thresholds, totals = threshold_sweep(sweeps, scores)
    assert np.all(np.diff(thresholds) < 0)
    for t, total in zip(thresholds, totals, strict=True):
        direct = sum(score_file(s, x >= t).score for s, x in zip(sweeps, scores, strict=True))
        assert total == pytest.approx(direct)


@pytest.mark.parametrize(
    ("step", "rows"),
    [(300.0, 288), (1800.0, 48), (3600.0, 24), (0.0, 0), (7.0, 0), (7200.0, 12), (86400.0, 0)],
)
def test_rows_per_day_from_the_timestamp_spacing(step: float, rows: int) -> None:
    """A whole number of rows per day, hourly or finer; otherwise no daily period."""
    assert rows_per_day(step) == rows


def test_make_detector_gives_the_period_only_to_detectors_that_take_one() -> None:
    lik = make_detector("likelihood", 300.0)
    assert isinstance(lik, Likelihood) and lik.period == 288 and lik.lags == (288, 2016)
    off = make_detector("likelihood", 300.0, season=False)
    assert isinstance(off, Likelihood) and off.period == 0 and off.lags == ()
    assert isinstance(make_detector("ewma_z", 300.0), EwmaZ)
