"""The metrics of docs/design.md, section 5, against values computed by hand."""

import math

import pytest

from clexp.core import metrics

R3 = [
    [0.9, 0.1, 0.0],
    [0.6, 0.8, 0.2],
    [0.5, 0.7, 0.95],
]
B3 = [0.1, 0.15, 0.05]


def test_average_accuracy_uses_last_row():
    assert metrics.average_accuracy(R3) == pytest.approx((0.5 + 0.7 + 0.95) / 3)


def test_average_accuracy_of_partial_stream_counts_seen_experiences_only():
    assert metrics.average_accuracy(R3[:2]) == pytest.approx((0.6 + 0.8) / 2)


def test_forgetting_by_hand():
    # j=0: max(0.9, 0.6) - 0.5 = 0.4 ; j=1: max(0.1, 0.8) - 0.7 = 0.1
    assert metrics.forgetting(R3) == pytest.approx((0.4 + 0.1) / 2)


def test_bwt_by_hand():
    assert metrics.backward_transfer(R3) == pytest.approx(((0.5 - 0.9) + (0.7 - 0.8)) / 2)


def test_fwt_by_hand():
    # j=1: R[0][1] - b1 = 0.1 - 0.15 ; j=2: R[1][2] - b2 = 0.2 - 0.05
    assert metrics.forward_transfer(R3, B3) == pytest.approx(((0.1 - 0.15) + (0.2 - 0.05)) / 2)


def test_one_experience_has_no_transfer_or_forgetting():
    s = metrics.summary([[0.7]], [0.1])
    assert s == {"avg_acc": 0.7, "forgetting": None, "bwt": None, "fwt": None}


def test_perfect_memory_has_zero_forgetting():
    R = [[1.0, 0.0], [1.0, 1.0]]
    assert metrics.forgetting(R) == 0.0
    assert metrics.backward_transfer(R) == 0.0


def test_forgetting_can_be_negative_when_accuracy_improves():
    R = [[0.5, 0.0], [0.8, 0.9]]
    assert metrics.forgetting(R) == pytest.approx(-0.3)
    assert math.isclose(metrics.backward_transfer(R), 0.3)


def test_empty_matrix_is_an_error():
    with pytest.raises(ValueError):
        metrics.average_accuracy([])
