import torch

from studies.semantic_id_stats import shared_prefix_shares


def test_shares_count_pairs_equal_on_every_code_up_to_the_level():
    sem_ids = torch.tensor([[1, 2, 3, 0],
                            [1, 2, 4, 0],   # item 0's first two codes
                            [1, 5, 3, 0],   # item 0's first code only (the third matches, but after a miss)
                            [7, 2, 3, 0]])  # nothing: the later codes match, the first does not
    last = torch.tensor([0, 0, 0, 0])
    target = torch.tensor([0, 1, 2, 3])
    assert shared_prefix_shares(sem_ids, last, target, levels=3) == [0.75, 0.5, 0.25]
