"""A GPT decoder, written here (no weights, no downloads): causal self-attention through
``scaled_dot_product_attention``, pre-norm blocks, a GELU MLP, learned positions and the output
layer tied to the token embedding, as GPT-2 and nanoGPT have it. ``forward(idx, targets=None)``
returns ``(logits, loss)``: the loss when targets are given (cross-entropy over the next
tokens), and for inference only the last position's logits, as nanoGPT does.

Two sizes: ``gpt_cpu`` (nanoGPT's CPU settings: 4 layers, 4 heads, 128 wide, block 64, batch 12, a
character vocabulary of 65) and ``gpt2_124m`` (GPT-2 small: 12 layers, 12 heads, 768 wide,
block 1024, vocabulary 50,304 padded to a multiple of 64), for GPUs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ._registry import Decoder, register_model
from .inputs import tokens

WEIGHT_DECAY = 0.1  # nanoGPT's, on the 2-D weights only


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int
    block_size: int
    n_layer: int
    n_head: int
    n_embd: int
    dropout: float = 0.0
    bias: bool = True


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        if cfg.n_embd % cfg.n_head:
            raise ValueError(f"n_embd {cfg.n_embd} is not a multiple of n_head {cfg.n_head}")
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.n_head, self.dropout = cfg.n_head, cfg.dropout
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=2)
        # (B, T, C) -> (B, heads, T, head size)
        q, k, v = (y.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for y in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                           is_causal=True)
        return self.resid_drop(self.proj(y.transpose(1, 2).contiguous().view(b, t, c)))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = nn.Sequential(nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias), nn.GELU(),
                                 nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias), nn.Dropout(cfg.dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.config = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2's scaled init of the residual projections
            if name.endswith(("proj.weight", "mlp.2.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        t = idx.shape[1]
        if t > self.config.block_size:
            raise ValueError(f"sequence of {t} tokens; the block size is {self.config.block_size}")
        pos = torch.arange(t, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        for block in self.blocks:
            x = block(x)
        x = self.ln_f(x)
        if targets is None:  # inference: only the last position's next token
            return self.lm_head(x[:, [-1], :]), None
        logits = self.lm_head(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        return logits, loss


def decay_groups(model: nn.Module, weight_decay: float = WEIGHT_DECAY) -> list[dict]:
    """nanoGPT's ``configure_optimizers`` groups: weight decay on the 2-D weights (matmuls and
    embeddings), none on biases and LayerNorm gains; a tied weight counted once."""
    params = {id(p): p for p in model.parameters() if p.requires_grad}.values()
    return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


CPU = GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128)
GPT2_124M = GPTConfig(vocab_size=50304, block_size=1024, n_layer=12, n_head=12, n_embd=768)


def _register(cfg: GPTConfig, name: str, batch_size: int, doc: str) -> None:
    def build() -> nn.Module:
        return GPT(cfg)

    build.__doc__ = doc
    register_model(inputs=tokens(vocab_size=cfg.vocab_size, seq_len=cfg.block_size), loss="own", name=name,
                   param_groups=decay_groups, batch_size=batch_size, family="transformer",
                   tags=("transformer", "decoder", "llm"),
                   decoder=Decoder(layers=cfg.n_layer, heads=cfg.n_head, width=cfg.n_embd))(build)


_register(CPU, "gpt_cpu", 12, "GPT decoder at nanoGPT's CPU size: 4 layers, 4 heads, 128 wide, block 64, vocab 65")
_register(GPT2_124M, "gpt2_124m", 8, "GPT-2 124M: 12 layers, 12 heads, 768 wide, block 1024, vocab 50,304")
