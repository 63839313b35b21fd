import math

import pytest
import torch

from runtime.lr_schedule import lr_factor, ramp_then_inverse_sqrt


def lrs_seen_by_updates(ramp_steps: int, constant_steps: int, n: int, lr: float = 0.01, cooldown_steps: int = 0) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = ramp_then_inverse_sqrt(opt, ramp_steps, constant_steps, cooldown_steps, iterations=n)
    lrs = []
    for _ in range(n):
        lrs.append(opt.param_groups[0]["lr"])  # the lr the next opt.step() uses
        opt.step()
        sched.step()
    return lrs


def test_constant_then_inverse_sqrt_without_ramp():
    lrs = lrs_seen_by_updates(0, 100, 400)
    assert lrs[0] == lrs[99] == 0.01
    assert lrs[200] == pytest.approx(0.01 * math.sqrt(100 / 200))
    assert lrs[399] == pytest.approx(0.01 * math.sqrt(100 / 399))


def test_linear_ramp_from_zero_then_the_paper_schedule():
    lrs = lrs_seen_by_updates(10, 100, 400)
    assert lrs[:10] == pytest.approx([0.01 * (i + 1) / 10 for i in range(10)])  # update 1 uses lr/10, update 10 the full lr
    assert lrs[10] == lrs[99] == 0.01
    assert lrs[399] == pytest.approx(0.01 * math.sqrt(100 / 399))


def test_ramp_longer_than_the_constant_phase_multiplies_the_decay():
    assert lr_factor(199, ramp_steps=400, constant_steps=100) == pytest.approx(200 / 400 * math.sqrt(100 / 199))


def test_cooldown_falls_linearly_to_zero_over_the_last_steps():
    lrs = lrs_seen_by_updates(0, 100, 400, cooldown_steps=100)
    plain = lrs_seen_by_updates(0, 100, 400)
    assert lrs[:301] == plain[:301]  # untouched until iterations - cooldown_steps
    assert lrs[350] == pytest.approx(plain[350] * 50 / 100)
    assert lrs[399] == pytest.approx(plain[399] / 100)  # the last update: 1 / cooldown_steps of the lr, not zero


def test_cooldown_as_long_as_the_run_starts_at_the_first_update():
    lrs = lrs_seen_by_updates(0, 1000, 10, cooldown_steps=10)
    assert lrs == pytest.approx([0.01 * (10 - i) / 10 for i in range(10)])


@pytest.mark.parametrize("ramp, constant, cooldown", [(-1, 10, 0), (0, 0, 0), (0, 10, -1), (0, 10, 101)])
def test_bad_lengths_are_refused(ramp, constant, cooldown):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="train.lr_"):
        ramp_then_inverse_sqrt(opt, ramp, constant, cooldown, iterations=100)
