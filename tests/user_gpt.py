"""A user's own GPT, written inside the tests as nanoGPT's ``model.py`` writes it: ``forward(idx,
targets=None) -> (logits, loss)``, the loss computed inside, only the last position's logits when
there are no targets. It is registered through the public API alone (no monkeypatching), as a
user's ``--model-module`` does; ``user_gpt_wrong`` is the same model with a planted difference
that only the compiled path takes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models import Decoder, register_model, tokens

VOCAB, BLOCK, LAYERS, HEADS, WIDTH = 32, 16, 2, 2, 32


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(WIDTH), nn.LayerNorm(WIDTH)
        self.attn, self.proj = nn.Linear(WIDTH, 3 * WIDTH), nn.Linear(WIDTH, WIDTH)
        self.mlp = nn.Sequential(nn.Linear(WIDTH, 4 * WIDTH), nn.GELU(), nn.Linear(4 * WIDTH, WIDTH))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = (y.view(b, t, HEADS, c // HEADS).transpose(1, 2) for y in self.attn(self.ln1(x)).split(c, 2))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, c)
        x = x + self.proj(y)
        return x + self.mlp(self.ln2(x))


class TinyGPT(nn.Module):
    def __init__(self, planted: bool = False) -> None:
        super().__init__()
        self.planted = planted
        self.wte, self.wpe = nn.Embedding(VOCAB, WIDTH), nn.Embedding(BLOCK, WIDTH)
        self.blocks = nn.Sequential(*(Block() for _ in range(LAYERS)))
        self.ln_f = nn.LayerNorm(WIDTH)
        self.lm_head = nn.Linear(WIDTH, VOCAB, bias=False)
        self.lm_head.weight = self.wte.weight

    def forward(self, idx, targets=None):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        x = self.ln_f(self.blocks(x))
        if self.planted and torch.compiler.is_compiling():
            x = x * 1.05  # the planted bug: only compiled code takes this path
        if targets is None:
            return self.lm_head(x[:, [-1], :]), None
        logits = self.lm_head(x)
        return logits, F.cross_entropy(logits.view(-1, VOCAB), targets.view(-1))


def decay_groups(model: nn.Module) -> list[dict]:
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


SHAPE = dict(inputs=tokens(vocab_size=VOCAB, seq_len=BLOCK), loss="own", param_groups=decay_groups,
             decoder=Decoder(layers=LAYERS, heads=HEADS, width=WIDTH), batch_size=4)


@register_model(**SHAPE)
def user_gpt() -> nn.Module:
    return TinyGPT()


@register_model(**SHAPE)
def user_gpt_wrong() -> nn.Module:
    return TinyGPT(planted=True)
