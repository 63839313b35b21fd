import hashlib

import pytest
import torch

import data.item_embeddings as item_embeddings

FAKE_DIM = 8


class FakeSentenceTransformer:
    """Stands in for sentence-transformers: a fixed vector per text (from its hash),
    so tests need no model weights and can check which text went where."""

    loaded: list[str] = []

    def __init__(self, model: str, device: str = "cpu"):
        FakeSentenceTransformer.loaded.append(model)

    @staticmethod
    def vector(text: str) -> torch.Tensor:
        seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
        return torch.randn(FAKE_DIM, generator=torch.Generator().manual_seed(seed))

    def encode(self, texts, batch_size=32, show_progress_bar=False, convert_to_tensor=True, normalize_embeddings=False):
        return torch.stack([self.vector(t) for t in texts])


@pytest.fixture
def fake_encoder(monkeypatch):
    FakeSentenceTransformer.loaded = []
    monkeypatch.setattr(item_embeddings, "SentenceTransformer", FakeSentenceTransformer)
    return FakeSentenceTransformer
