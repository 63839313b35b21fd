import math

import pytest
import torch

from runtime.lr_schedule import lr_factor, ramp_then_inverse_sqrt


def lrs_seen_by_updates(ramp_steps: int, constant_steps: int, n: int, lr: float = 0.01) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = ramp_then_inverse_sqrt(opt, ramp_steps, constant_steps)
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


@pytest.mark.parametrize("ramp, constant", [(-1, 10), (0, 0)])
def test_bad_lengths_are_refused(ramp, constant):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="train.lr_"):
        ramp_then_inverse_sqrt(opt, ramp, constant)
