"""RMSE and the PHM08 score on cases worked out by hand."""

from __future__ import annotations

import math

import pytest

from plantwatch.detect.rul import phm08_score, phm08_terms, rmse


def test_rmse_by_hand() -> None:
    # errors +3 and -4: sqrt((9 + 16) / 2) = sqrt(12.5)
    assert rmse([10.0, 20.0], [7.0, 24.0]) == pytest.approx(3.5355339, rel=1e-7)
    assert rmse([5.0, 5.0, 5.0], [5.0, 5.0, 5.0]) == 0.0


def test_phm08_early_and_late_by_hand() -> None:
    # d = pred - true. Early (d < 0): exp(-d/13) - 1; late (d >= 0): exp(d/10) - 1.
    terms = phm08_terms([87.0, 110.0, 113.0, 90.0, 50.0], [100.0, 100.0, 100.0, 100.0, 50.0])
    assert terms[0] == pytest.approx(math.e - 1.0)  # 13 cycles early: e^1 - 1 = 1.71828
    assert terms[1] == pytest.approx(math.e - 1.0)  # 10 cycles late: e^1 - 1 = 1.71828
    assert terms[2] == pytest.approx(2.6692967)  # 13 late: e^1.3 - 1
    assert terms[3] == pytest.approx(1.1581055)  # 10 early: e^(10/13) - 1 = e^0.75 e^(1/52) - 1
    assert terms[4] == 0.0
    assert phm08_score([87.0, 110.0, 113.0, 90.0, 50.0], [100.0] * 4 + [50.0]) == pytest.approx(
        2 * 1.7182818 + 2.6692967 + 1.1581055
    )


def test_phm08_late_costs_more_than_early() -> None:
    for miss in (1.0, 5.0, 20.0, 40.0):
        late = phm08_score([100.0 + miss], [100.0])
        early = phm08_score([100.0 - miss], [100.0])
        assert late > early > 0.0
