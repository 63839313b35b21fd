from modules.embedding.item_id_embedder import ItemIdEmbedder
from modules.embedding.sem_id_embedder import SemIdEmbedder
from modules.embedding.user_id_embedder import UserIdEmbedder

__all__ = ["ItemIdEmbedder", "SemIdEmbedder", "UserIdEmbedder"]
