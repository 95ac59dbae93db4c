"""A BERT-style encoder classifier, written here (no weights, no downloads): token, position
and segment-free embeddings, post-norm encoder layers with bidirectional attention through
``scaled_dot_product_attention`` (padding masked by ``attention_mask``), the first token's state
pooled by a tanh layer, and a linear classifier. It takes named inputs and returns a dict, as
Hugging Face's ``BertForSequenceClassification`` does: ``model(input_ids=, attention_mask=,
labels=)`` -> ``{"loss": ..., "logits": ...}`` (the loss only when labels are given).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._registry import register_model
from .decoder import decay_groups
from .inputs import tokens


class EncoderLayer(nn.Module):
    def __init__(self, width: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.ln_1 = nn.LayerNorm(width)
        self.ffn = nn.Sequential(nn.Linear(width, ffn), nn.GELU(), nn.Linear(ffn, width))
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = (y.view(b, t, self.heads, c // self.heads).transpose(1, 2) for y in self.qkv(x).split(c, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = self.ln_1(x + self.proj(y.transpose(1, 2).reshape(b, t, c)))
        return self.ln_2(x + self.ffn(x))


class EncoderClassifier(nn.Module):
    def __init__(self, vocab_size: int = 30522, max_len: int = 128, layers: int = 2, heads: int = 2,
                 width: int = 128, num_labels: int = 2) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab_size, width)
        self.pos = nn.Embedding(max_len, width)
        self.ln = nn.LayerNorm(width)
        self.layers = nn.ModuleList(EncoderLayer(width, heads, 4 * width) for _ in range(layers))
        self.pool = nn.Linear(width, width)
        self.classifier = nn.Linear(width, num_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        t = input_ids.shape[1]
        x = self.ln(self.tok(input_ids) + self.pos(torch.arange(t, device=input_ids.device)))
        # A boolean mask broadcast over heads and queries: True where a key may be attended to.
        mask = None if attention_mask is None else attention_mask.bool()[:, None, None, :]
        for layer in self.layers:
            x = layer(x, mask)
        logits = self.classifier(torch.tanh(self.pool(x[:, 0])))
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = F.cross_entropy(logits, labels)
        return out


@register_model(inputs=tokens(vocab_size=30522, seq_len=128, keywords=True, attention_mask=True, target="class",
                              num_classes=2),
                loss="own", param_groups=decay_groups, batch_size=8, family="transformer",
                tags=("transformer", "encoder"))
def bert_cls() -> nn.Module:
    """BERT-style encoder classifier: 2 layers, 2 heads, 128 wide, seq 128, BERT's vocab 30,522, 2 labels."""
    return EncoderClassifier()
