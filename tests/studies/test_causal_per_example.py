"""studies/causal_per_example.py: the recipe's bindings, all positions' causal model, per-example batches."""
import gin
import torch

import train_decoder
from runtime.gin_cli import load_gin_config
from studies import causal_per_example


def test_the_recipe_bindings_build_the_causal_model_that_reads_per_example_batches():
    gin.clear_config()
    load_gin_config(train_decoder.train, "configs/decoder_amazon_cpu.gin", ["train.d_model=16", "train.n_heads=2",
                                                                             "train.d_head=8", "train.ff_dim=32"])
    bindings = gin.get_bindings(train_decoder.train)
    gin.clear_config()
    torch.manual_seed(0)
    sem_ids = torch.randint(0, 8, (30, 4))
    plain = train_decoder.build_model(sem_ids, 8, 20, bindings)
    causal = causal_per_example.causal_build_model(sem_ids, 8, 20, bindings)
    assert not bindings["all_positions"] and not plain.causal_encoder  # the recipe per example, its own model
    assert causal.causal_encoder and causal.kwargs["causal_encoder"] and causal.item_emb is not None
    assert "item_pos_emb" not in dict(causal.named_parameters())  # relative distances instead of recency
    history = sem_ids[torch.randint(0, 30, (3, 5))]                  # [B, L, T]: per-example batches
    history[0, 3:] = -1                                              # right padding, as the batches hold
    logits = causal.eval()(torch.tensor([0, 1, 2]), history, sem_ids[:3])
    assert logits.shape == (3, 4, 8) and torch.isfinite(logits).all()
