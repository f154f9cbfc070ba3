"""The learning-rate schedules: a function of the iteration alone (a resume needs no scheduler state),
with values at known iterations."""

from __future__ import annotations

import math

import pytest

from unetbench.challenges.loading import apply_overrides, load_spec
from unetbench.records.run_folder import RunDir
from unetbench.training.trainer import learning_rate

from .helpers import QUICKSTART, REPORTS


def _training(**overrides):
    return apply_overrides(load_spec(QUICKSTART), {f"training.{k}": v for k, v in overrides.items()}).training


def test_constant_is_the_spec_value_at_every_iteration():
    training = _training(lr_schedule="constant", learning_rate=0.002)
    assert [learning_rate(training, i) for i in (0, 1, 999, 10**6)] == [0.002] * 4


def test_step_decays_by_its_factor_every_n_iterations():
    training = _training(lr_schedule="step", learning_rate=0.01, lr_step_every=100, lr_step_factor=0.1)
    values = [learning_rate(training, i) for i in (0, 99, 100, 199, 200, 250)]
    assert values == pytest.approx([0.01, 0.01, 0.001, 0.001, 0.0001, 0.0001])


def test_cosine_falls_from_the_spec_value_to_zero_at_the_last_iteration_and_stays_there():
    training = _training(lr_schedule="cosine", learning_rate=0.001, iterations=1000)
    assert learning_rate(training, 0) == pytest.approx(0.001)
    assert learning_rate(training, 250) == pytest.approx(0.001 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert learning_rate(training, 500) == pytest.approx(0.0005)
    assert learning_rate(training, 1000) == pytest.approx(0.0, abs=1e-15)
    assert learning_rate(training, 1500) == pytest.approx(0.0, abs=1e-15)  # a resume past the end
    values = [learning_rate(training, i) for i in range(0, 1001, 50)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False))


def test_a_recorded_cosine_run_logged_the_schedule_it_was_given():
    """The E1 run that chose em-cpu's schedule (cosine from 0.001 over 5,000 iterations): every point of its
    curve carries the rate of the step that ended there."""
    record = RunDir(REPORTS / "em-cpu" / "schedule" / "E1").read_record()
    training = record.resolved_spec().training
    assert training.lr_schedule == "cosine" and training.iterations == 5000
    assert len(record.training.curve) > 10
    for point in record.training.curve:
        assert point.lr == pytest.approx(learning_rate(training, point.iteration - 1), rel=1e-9)
