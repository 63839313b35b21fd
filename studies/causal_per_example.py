"""A diagnostic of issue 34 (not a recipe): train_decoder.py's per-example training of all positions' model.

    python -m studies.causal_per_example configs/decoder_amazon_cpu.gin [--gin BINDING ...]

All positions (`train.all_positions`) changes two things at once against the laptop recipe: the model (a causal
encoder with a relative position bias, modules/model.py) and the training (one pass per window, every target at
once). On Beauty and Sports it learns less per target (studies/results/all_positions_prior_*.md). This trains
the causal model the per-example way, batch for batch as the recipe (the same examples, order, learning rate and
steps): per example and all positions give every target the same loss on this model
(tests/modules/test_all_positions.py), so at equal steps it sits where the model alone puts it. Level with
all positions: the gap is the causal encoder's; level with the recipe: it is the training's. The only change is
the model's `causal_encoder=True`; the bindings (and so the run folder's config.gin) stay the recipe's.
"""
from __future__ import annotations

import sys

from typing import Any

import torch

import train_decoder
from modules.model import EncoderDecoderRetrievalModel

_build_model = train_decoder.build_model


def causal_build_model(sem_ids: torch.Tensor, codebook_size: int, max_history: int,
                       bindings: dict[str, Any]) -> EncoderDecoderRetrievalModel:
    """train_decoder.build_model with all positions' causal encoder; the batches stay per example."""
    return _build_model(sem_ids, codebook_size, max_history, {**bindings, "all_positions": True})


if __name__ == "__main__":
    train_decoder.build_model = causal_build_model  # train() looks it up here at call time
    train_decoder.main(sys.argv[1:])
