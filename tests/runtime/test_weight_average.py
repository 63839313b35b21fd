import pytest
import torch

from runtime.weight_average import WeightAverage


def test_first_update_copies_then_each_update_moves_a_share_of_the_way():
    model = torch.nn.Linear(3, 2)
    average = WeightAverage(model, decay=0.9)
    assert not any(p.requires_grad for p in average.module.parameters())
    with torch.no_grad():
        model.weight.fill_(1.0)
    average.update(first=True)
    assert torch.equal(average.module.weight, model.weight)  # exactly the weights, whatever the copy held
    with torch.no_grad():
        model.weight.fill_(2.0)
    average.update()
    torch.testing.assert_close(average.module.weight, torch.full((2, 3), 0.9 * 1.0 + 0.1 * 2.0))
    assert torch.equal(model.weight, torch.full((2, 3), 2.0))  # the trained weights are never touched


@pytest.mark.parametrize("decay", [0.0, 1.0])
def test_a_decay_outside_the_open_interval_is_refused(decay):
    with pytest.raises(ValueError, match="must be in"):
        WeightAverage(torch.nn.Linear(2, 2), decay)
