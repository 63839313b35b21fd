from modules.transformer.attention import MultiHeadAttention
from modules.transformer.blocks import Decoder, DecoderBlock, Encoder, EncoderBlock

__all__ = ["MultiHeadAttention", "Encoder", "EncoderBlock", "Decoder", "DecoderBlock"]
