import math

import pytest
import torch

from modules.codebook_health import code_counts, codebook_perplexity, codebook_usage, restart_dead_codes
from modules.quantize import Quantize


def test_counts_usage_and_perplexity_values():
    ids = torch.tensor([[0, 3], [0, 3], [1, 3], [2, 3]])  # level 0 uses 3 of 4 codes, level 1 one
    counts = code_counts(ids, 4)
    assert torch.equal(counts, torch.tensor([[2, 1, 1, 0], [0, 0, 0, 4]]))
    assert torch.allclose(codebook_usage(counts), torch.tensor([0.75, 0.25]))
    p = torch.tensor([0.5, 0.25, 0.25])
    expected = math.exp(-(p * p.log()).sum().item())
    assert torch.allclose(codebook_perplexity(counts), torch.tensor([expected, 1.0]))


def test_perplexity_of_uniform_use_is_codebook_size():
    ids = torch.arange(64).repeat(3).unsqueeze(1)
    assert codebook_perplexity(code_counts(ids, 64)).item() == pytest.approx(64.0, rel=1e-5)


def test_restart_moves_only_dead_codes_onto_residuals():
    torch.manual_seed(0)
    levels = [Quantize(4, 6) for _ in range(2)]
    before = [q.codebook.detach().clone() for q in levels]
    counts = torch.tensor([[3, 0, 1, 0, 2, 2], [1, 1, 1, 1, 1, 1]])
    residuals = torch.randn(10, 2, 4)
    restarted = restart_dead_codes(levels, counts, residuals)
    assert restarted.tolist() == [2, 0]
    after = [q.codebook.detach() for q in levels]
    dead = torch.tensor([False, True, False, True, False, False])
    assert torch.equal(after[0][~dead], before[0][~dead]) and torch.equal(after[1], before[1])
    # Each revived code now sits exactly on one of level 0's residuals.
    dist = torch.cdist(after[0][dead], residuals[:, 0])
    assert dist.min(1).values.max() < 1e-4
    assert not torch.equal(after[0][dead], before[0][dead])
