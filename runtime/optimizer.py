"""Stage 2's optimiser: AdamW or Adafactor, weight decay only where it regularises.

Weight decay pulls weights towards zero. On the matrices of linear maps (attention, MLP, the
output head) that is the usual regulariser; on embedding rows it shrinks exactly the rare
items' and users' vectors that get few gradient updates (a row nobody's batch touched decays
every step), and on LayerNorm gains and biases it only fights the scale the model needs
(the nanoGPT / T5 convention). So: decay on every parameter that is not an embedding, a norm
or a bias.

Learning rate, per optimiser:
- "adamw": the usual absolute step size (Adam's update is ~1 per coordinate before the lr).
- "adafactor" (`torch.optim.Adafactor`, Shazeer & Stern 2018; T5X's default, which the paper
  trained with): a RELATIVE step. Each step moves a parameter by about
  min(lr, 1/sqrt(step)) * max(1e-3, RMS(parameter)), so lr = 0.01 changes a weight matrix by
  about 1% of its own scale per step, and torch's Adafactor already decays that step as
  1/sqrt(step) after step 1/lr^2 = 10,000: the paper's "0.01 for 10k steps, then inverse
  square root" is Adafactor at lr 0.01 with no schedule of ours on top (any schedule given
  multiplies the cap lr, not the 1/sqrt(step) term). No momentum, factored second moments.
"""
from __future__ import annotations

import torch
from torch import nn

OPTIMIZERS = {"adamw": torch.optim.AdamW, "adafactor": torch.optim.Adafactor}  # train.optimizer -> class


def weight_decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """[{params with decay, weight_decay}, {embeddings, norms and biases, weight_decay 0}].
    A parameter is decayed iff it is not a bias and does not belong to an nn.Embedding or a norm."""
    no_decay_modules = (nn.Embedding, nn.LayerNorm, nn.RMSNorm)
    decay, no_decay = [], []
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            exempt = isinstance(module, no_decay_modules) or name.endswith("bias")
            (no_decay if exempt else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, name: str, learning_rate: float, weight_decay: float) -> torch.optim.Optimizer:
    """The optimiser `name` (see OPTIMIZERS) over `model`'s parameters, in weight_decay_groups."""
    if name not in OPTIMIZERS:
        raise ValueError(f"train.optimizer={name!r}: expected one of {tuple(OPTIMIZERS)}")
    return OPTIMIZERS[name](weight_decay_groups(model, weight_decay), lr=learning_rate)
