"""User token: the user id hashed into a fixed number of buckets (the paper, Sec. 4.1,
hashes user ids into 2,000 user tokens), so the table does not grow with the
number of users and an unseen user still gets a (shared) embedding."""
from __future__ import annotations

from torch import Tensor, nn


class UserIdEmbedder(nn.Module):
    def __init__(self, n_buckets: int, d_model: int) -> None:
        super().__init__()
        self.n_buckets = n_buckets
        self.emb = nn.Embedding(n_buckets, d_model)

    def forward(self, user_ids: Tensor) -> Tensor:  # [B] -> [B, D]
        # Ids are dense 0..n_users-1, so the modulo spreads them evenly over the buckets.
        return self.emb(user_ids % self.n_buckets)
