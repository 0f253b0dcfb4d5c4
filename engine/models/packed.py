"""The `gguf` precision: a GGUF model's weights as the file stores them, in PyTorch's packed-int4 CPU
matmul (`_weight_int4pack_mm_for_cpu`). The integers are not re-quantized.

That kernel reads groups of 32 4-bit integers with a scale and a zero per group and computes
w = (q - 8) * scale + zero, so each ggml block maps onto a group:
    Q4_0  w = d (q - 8)      scale d, zero 0
    Q4_1  w = d q + m        scale d, zero m + 8 d
    Q8_0  w = d q            two 4-bit halves: q = 16 hi + lo (hi -8..7, lo 0..15), so
                             w = 16 d hi + d lo: one layer of scale 16 d, zero 0 on hi + 8,
                             one of scale d, zero 8 d on lo; their outputs add.
The kernel is vectorized for bf16 activations only (fp32 ones take a scalar path, 20x slower here),
so scales, zeros and each layer's input are bf16: the integers are the file's, each scale and zero
is rounded once from the file's fp16 to bf16 (relative error at most 2^-9; Q8_0's halves scale by
powers of two, so a whole block moves by one factor), and the layer's output returns to fp32. The
load proves the mapping (`pack_gguf`): each layer's blocks, dequantized by ggml's formula, equal the
float weight transformers loaded from the same file.

A layer whose shape the kernel refuses (rows not a multiple of 16), or whose tensor is in another
GGUF format (F16, Q6_K...), keeps its float weights.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from engine.models.gguf_blocks import BLOCK, Blocks, dequantize_rows

log = logging.getLogger(__name__)
KERNEL_DTYPE = torch.bfloat16  # the kernel's vectorized path; see above


def _int4_parts(blocks: Blocks) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(q 0..15, scale, zero) per int4 layer whose outputs add up to the block format's matmul."""
    d = blocks.d.float()
    if blocks.kind == "Q4_0":
        return [(blocks.q, d, torch.zeros_like(d))]
    if blocks.kind == "Q4_1":
        assert blocks.m is not None
        return [(blocks.q, d, blocks.m.float() + 8 * d)]
    q = blocks.q.to(torch.int16)
    high, low = (q >> 4) + 8, q & 0x0F  # q = 16 (high - 8) + low
    return [(high.to(torch.uint8), 16 * d, torch.zeros_like(d)), (low.to(torch.uint8), d, 8 * d)]


class Int4Linear(nn.Module):
    """y = x W^T (+ bias), W held as one or two packed int4 matrices with a scale and zero per group."""

    def __init__(self, blocks: Blocks, bias: torch.Tensor | None):
        super().__init__()
        self.out_features, self.in_features = blocks.shape
        self.halves = len(parts := _int4_parts(blocks))
        for i, (q, scale, zero) in enumerate(parts):
            packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.to(torch.int32).contiguous(), 1)
            self.register_buffer(f"packed{i}", packed)
            # the kernel's (groups, N, 2) layout of (scale, zero)
            scales_zeros = torch.stack([scale, zero], dim=-1).transpose(0, 1).to(KERNEL_DTYPE).contiguous()
            self.register_buffer(f"scales_zeros{i}", scales_zeros)
        self.bias = None if bias is None else nn.Parameter(bias.detach().float(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).to(KERNEL_DTYPE).contiguous()
        out = torch.ops.aten._weight_int4pack_mm_for_cpu(rows, self.packed0, BLOCK, self.scales_zeros0).to(x.dtype)
        if self.halves == 2:
            half = torch.ops.aten._weight_int4pack_mm_for_cpu(rows, self.packed1, BLOCK, self.scales_zeros1)
            out = out + half.to(x.dtype)
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)


class BlockEmbedding(nn.Module):
    """An embedding table kept in its block format: a lookup dequantizes only the rows it reads."""

    def __init__(self, blocks: Blocks):
        super().__init__()
        self.kind = blocks.kind
        self.num_embeddings, self.embedding_dim = blocks.shape
        self.register_buffer("q", blocks.q.contiguous())
        self.register_buffer("d", blocks.d.contiguous())
        self.register_buffer("m", None if blocks.m is None else blocks.m.contiguous())

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        q, d, m = self.q, self.d, self.m  # buffers (nn.Module types its attributes as Tensor | Module)
        assert isinstance(q, torch.Tensor) and isinstance(d, torch.Tensor)
        return dequantize_rows(self.kind, q[ids], d[ids], m[ids] if isinstance(m, torch.Tensor) else None)


def pack_gguf(model: Any, blocks: dict[str, Blocks]) -> int:
    """Replace the linear layers and embeddings whose GGUF tensors are in a block format (`blocks`,
    by parameter name) by those blocks; returns how many were replaced. Each layer's blocks must
    dequantize to exactly the float weight it replaces, or the layer stays as it was (and says so)."""
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear | nn.Embedding)]
    # by the weight itself: a tied output layer (SmolLM2's) shares the embedding's tensor and its blocks
    by_weight = {id(m.weight): blocks[f"{name}.weight"] for name, m in layers if f"{name}.weight" in blocks}
    replaced = 0
    for name, module in layers:
        if (found := by_weight.get(id(module.weight))) is None:
            continue
        if not torch.equal(found.dequantize(), module.weight.detach().float()):
            log.warning("%s: the GGUF blocks do not match the loaded weight; it stays %s", name, module.weight.dtype)
            continue
        try:
            packed = Int4Linear(found, module.bias) if isinstance(module, nn.Linear) else BlockEmbedding(found)
        except RuntimeError as exc:  # a shape the packed kernel does not take
            log.warning("%s stays %s: %s", name, module.weight.dtype, exc)
            continue
        parent, _, attribute = name.rpartition(".")
        setattr(model.get_submodule(parent), attribute, packed)
        replaced += 1
    return replaced
