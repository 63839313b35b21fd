"""history_unlikelihood (modules/model.py): the item before each target as a negative, decoded from the targets'
encoder pass as if it were the target, and -log(1 - p) of its whole ID, p the probability beam search ranks it by."""
import torch

from data.batching import sem_id_batch
from modules.model import previous_items
from tests.modules.test_all_positions import M, catalogue_and_trie, causal_model


def test_previous_items_are_the_item_before_each_target_never_the_target_itself():
    history = torch.tensor([[[1, 1], [2, 2], [3, 3], [2, 2], [-1, -1]]])   # [1, 5, 2]: items a b c b, padded
    target = history.clone()
    target[:, 0] = -1                                                   # position 0: context only
    negative = previous_items(history, target)
    assert negative[0, :, 0].tolist() == [-1, 1, 2, 3, -1]              # padding: no target, no negative
    same = torch.tensor([[[1, 1], [1, 1], [2, 2]]])                     # an item bought twice in a row
    assert previous_items(same, same)[0, :, 0].tolist() == [-1, -1, 1]


def test_negatives_at_their_targets_positions_decode_like_targets_and_the_loss_is_exact():
    catalogue, trie = catalogue_and_trie()
    model = causal_model(constrained=True)
    items = torch.randint(0, 40, (3, M + 1), generator=torch.Generator().manual_seed(2))
    users = torch.tensor([0, 3, 5])
    history = sem_id_batch({"user_id": users, "history": items, "target": items[:, 0]}, catalogue)["history"]
    target = history.clone()
    negative = previous_items(history, target)
    W = target.shape[1]
    logits, negative_logits = model(users, history, target, negative)
    torch.testing.assert_close(logits, model(users, history, target))   # the targets' logits are unchanged
    # a negative placed at a target's position reads that target's prefix: as if it were that target
    swapped = target.clone()
    swapped[:, 2] = negative[:, 2]
    torch.testing.assert_close(negative_logits[:, 2], model(users, history, swapped)[:, 2])

    valid = trie.path_masks(negative)
    loss = model.history_unlikelihood(negative_logits, negative, valid)
    expected = []
    for b in range(3):
        for w in range(W):
            if negative[b, w, 0] < 0:
                continue
            row = negative_logits[b, w].masked_fill(~valid[b, w], float("-inf"))
            p = row.log_softmax(-1).gather(-1, negative[b, w, :, None]).sum().exp()
            expected.append(-torch.log1p(-p))
    assert len(expected) == 3 * (W - 1)
    torch.testing.assert_close(loss, torch.stack(expected).mean())


def test_per_example_negatives_are_the_last_history_item_decoded_from_the_same_memory():
    catalogue, trie = catalogue_and_trie()
    model = causal_model(constrained=True)
    model = type(model)(**{**model.kwargs, "causal_encoder": False}).eval()  # the paper's encoder-decoder
    items = torch.tensor([[3, 7, 9, -1], [5, -1, -1, -1], [-1, -1, -1, -1]])
    batch = sem_id_batch({"user_id": torch.tensor([0, 1, 2]), "history": items, "target": torch.tensor([4, 6, 8])},
                         catalogue)
    negative = previous_items(batch["history"], batch["target"])
    assert negative[:, 0].tolist() == [int(catalogue[9, 0]), int(catalogue[5, 0]), -1]  # no history: none
    logits, negative_logits = model(batch["user_ids"], batch["history"], batch["target"], negative)
    torch.testing.assert_close(logits, model(batch["user_ids"], batch["history"], batch["target"]))
    as_target = model(batch["user_ids"], batch["history"], negative.clamp(min=0))
    torch.testing.assert_close(negative_logits[:2], as_target[:2])
    assert model.history_unlikelihood(negative_logits, negative, trie.path_masks(negative)) > 0
