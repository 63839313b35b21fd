"""SemanticIdTokenizer: the item -> semantic ID table that the retrieval model reads and writes.

Each item gets the RQ-VAE's n_codebooks codes plus one collision token: items
that share all n_codebooks codes are numbered 0, 1, 2, ... in item-id order, so
every item ends with a unique ID (TIGER, Rajput et al. 2023, Sec. 3.1).
"""
from __future__ import annotations

import csv
import io
import math
import os
from typing import TYPE_CHECKING, Sequence

import torch
from torch import Tensor

from runtime.atomic_io import atomic_torch_save, atomic_write_text
from runtime.errors import CheckpointError

if TYPE_CHECKING:
    from modules.rqvae import RqVae
    from modules.semantic_id_trie import SemanticIdTrie


def prefix_groups(codes: Tensor) -> tuple[Tensor, Tensor]:
    """codes [N, L] -> (group [N] index of each row's distinct code tuple, group_sizes [G])."""
    _, group, group_sizes = torch.unique(codes, dim=0, return_inverse=True, return_counts=True)
    return group, group_sizes


def collision_tokens(codes: Tensor) -> Tensor:
    """codes [N, L] -> [N] rank of each row among the rows with the same codes, in row order."""
    group, group_sizes = prefix_groups(codes)
    order = torch.sort(group, stable=True).indices  # rows grouped, item-id order inside a group
    group_start = torch.cumsum(group_sizes, 0) - group_sizes  # [G] first position of each group
    rank_in_sorted = torch.arange(len(order), device=codes.device) - group_start[group[order]]
    tokens = torch.empty_like(group)
    tokens[order] = rank_in_sorted
    return tokens


def collision_stats(codes: Tensor) -> dict[str, float]:
    """How unique the RQ-VAE codes alone are, over codes [N, L].

    collision_share: share of items whose code tuple is shared with another item;
    largest_collision_group: most items on one tuple;
    id_entropy_bits: entropy of the tuple distribution (log2 N when all are unique).
    """
    group, group_sizes = prefix_groups(codes)
    p = group_sizes.double() / len(group)
    return {
        "collision_share": float((group_sizes[group] > 1).double().mean()),
        "largest_collision_group": int(group_sizes.max()),
        "id_entropy_bits": float(-(p * p.log2()).sum()),
        "id_entropy_max_bits": math.log2(len(group)),
    }


class SemanticIdTokenizer:
    def __init__(self, sem_ids: Tensor, codebook_size: int) -> None:
        """sem_ids [n_items, n_codebooks + 1], row = item id, last column = collision token."""
        if sem_ids.dim() != 2 or sem_ids.shape[1] < 2:
            raise ValueError(f"sem_ids must be [n_items, n_codebooks + 1], got {tuple(sem_ids.shape)}")
        if int(sem_ids.max()) >= codebook_size or int(sem_ids.min()) < 0:
            raise ValueError(
                f"semantic ID tokens must lie in [0, {codebook_size}); found {int(sem_ids.min())}..{int(sem_ids.max())}"
                " (a collision group larger than codebook_size cannot be made unique with one extra token)"
            )
        self.sem_ids = sem_ids.long().cpu()
        self.codebook_size = codebook_size
        self.n_codebooks = sem_ids.shape[1] - 1

    @classmethod
    def from_codes(cls, codes: Tensor, codebook_size: int) -> "SemanticIdTokenizer":
        """codes [n_items, n_codebooks] from the RQ-VAE -> tokenizer with the collision token appended."""
        codes = codes.long().cpu()
        tokens = collision_tokens(codes)
        if int(tokens.max()) >= codebook_size:
            _, sizes = prefix_groups(codes)
            raise ValueError(
                f"{int(sizes.max())} items share one {codes.shape[1]}-code prefix, more than codebook_size="
                f"{codebook_size} collision tokens can tell apart; train the RQ-VAE longer or enlarge the codebooks"
            )
        return cls(torch.cat([codes, tokens.unsqueeze(-1)], dim=1), codebook_size)

    @classmethod
    @torch.no_grad()
    def from_rqvae(cls, model: "RqVae", features: Tensor, batch_size: int = 4096) -> "SemanticIdTokenizer":
        """Run the trained RQ-VAE over the whole catalogue, features [n_items, input_dim] in item-id order."""
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        codes = torch.cat([model.semantic_ids(batch.to(device)).cpu() for batch in features.split(batch_size)])
        model.train(was_training)
        return cls.from_codes(codes, model.codebook_size)

    @property
    def n_items(self) -> int:
        return self.sem_ids.shape[0]

    def collision_stats(self) -> dict[str, float]:
        return collision_stats(self.sem_ids[:, : self.n_codebooks])

    def save(self, path: str | os.PathLike) -> None:
        atomic_torch_save({"sem_ids": self.sem_ids, "codebook_size": self.codebook_size}, path)

    def write_table(self, path: str | os.PathLike, item_ids: Sequence[str], titles: Sequence[str]) -> None:
        """The item -> semantic ID table as CSV, for a person (train_rqvae.py writes it beside semantic_ids.pt):
        item (the 0-based number evaluate.py prints), item_id (the data set's own), title, code_1..code_L,
        collision_token (0 unless items share all L codes). Nothing reads it back: semantic_ids.pt is the model's."""
        if not len(item_ids) == len(titles) == self.n_items:
            raise ValueError(f"{len(item_ids)} item ids and {len(titles)} titles for {self.n_items} semantic IDs")
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["item", "item_id", "title", *(f"code_{level + 1}" for level in range(self.n_codebooks)),
                         "collision_token"])
        for item, (own_id, title, codes) in enumerate(zip(item_ids, titles, self.sem_ids.tolist())):
            writer.writerow([item, own_id, title, *codes])
        atomic_write_text(out.getvalue(), path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SemanticIdTokenizer":
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # truncated zip, bad pickle: do not guess what it held
            raise CheckpointError(f"{path} is truncated or corrupted ({type(e).__name__}: {e}); rerun train_rqvae.py "
                                  "to write it again") from e
        if not isinstance(state, dict) or "sem_ids" not in state or "codebook_size" not in state:
            raise CheckpointError(f"{path} is not a saved SemanticIdTokenizer (expected keys sem_ids, codebook_size)")
        return cls(state["sem_ids"], int(state["codebook_size"]))

    def trie(self) -> "SemanticIdTrie":
        """The valid IDs as a prefix structure, for constrained decoding."""
        from modules.semantic_id_trie import SemanticIdTrie

        return SemanticIdTrie(self.sem_ids, self.codebook_size)
