"""The `gguf` precisions: a GGUF model's weights as the file stores them (Q4_0, Q4_1, Q8_0 blocks of
32 integers with fp16 scales), multiplied by our kernel (`studio::gguf_mm`, gguf_mm.cpp). The integers
are never re-quantized; what differs between the two is how finely the activations are rounded, per
block of 32, for integer dot products (ACTIVATION_BITS):
    gguf      int16: fp32's results to ~1e-5 (KL against fp32 below 1e-5)
    gguf-q8   int8, as llama.cpp multiplies (int16 for the Q8_0 output layer)
Prefill's many rows make a matmul compute-bound: from PREFILL_ROWS rows on, a layer dequantizes its
blocks (exactly: ggml's formula in fp32) and calls the BLAS matmul, as fp32 does, on the activations
rounded the same way, so a prompt and its answer are computed alike.

The load proves the mapping (`pack_gguf`): each layer's blocks, dequantized by ggml's formula, equal
the float weight transformers loaded from the same file. A layer whose tensor is in another GGUF
format (F16, Q6_K...) keeps its float weights.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from engine.models.gguf_blocks import BLOCK, Blocks, dequantize_rows
from engine.models.gguf_kernel import gguf_dequantize, gguf_mm, load_kernel

log = logging.getLogger(__name__)
# Activation bits by precision and block format. int16 runs at about int8's speed (fp32 activations:
# 1.3-1.5x as long). The Q8_0 layer of a llama.cpp file is the output layer, whose rounding goes
# straight into the logits: gguf-q8 keeps int16 there (KL 0.0032 against int8's 0.0041, teacher-forced
# on 512 tokens of prose; llama.cpp's own: 0.0040).
ACTIVATION_BITS = {
    "gguf": {"Q4_0": 16, "Q4_1": 16, "Q8_0": 16},
    "gguf-q8": {"Q4_0": 8, "Q4_1": 8, "Q8_0": 16},
}
# From here a dequantized BLAS matmul takes over: writing the fp32 weights (~35 ms a forward of the embedded
# model) is repaid by BLAS's faster arithmetic from ~64 rows on (alternating forwards, the 2-core AMD EPYC:
# 64 rows 244 ms kernel, 241 dequantized; 128 rows 389 and 321; 512 rows 1732 and 1164)
PREFILL_ROWS = 64


def pack_nibbles(q: torch.Tensor) -> torch.Tensor:
    """(N, K) integers 0..15 as ggml stores them: per block 16 bytes, weight j in the low nibble of
    byte j and weight j + 16 in its high nibble."""
    blocks = q.reshape(q.shape[0], -1, BLOCK)
    return (blocks[..., :16] | (blocks[..., 16:] << 4)).reshape(q.shape[0], -1).contiguous()


def interleaved(kind: str, activation_bits: int, out_features: int) -> bool:
    """Whether a layer's blocks are interleaved by eight outputs for the kernel (gguf_mm.cpp says why):
    4-bit blocks times int8 activations, whose sums over a block fit the int16 lanes it adds them in."""
    return kind != "Q8_0" and activation_bits == 8 and out_features % 8 == 0


def interleave(t: torch.Tensor, width: int) -> torch.Tensor:
    """(N, blocks x width) values per block, output by output, as (N / 8, blocks, 8 x width): per
    block, eight outputs' values side by side in runs of four (a block's 16 bytes of nibbles) or of
    one (its scales, width 1)."""
    run = min(width, 4)
    n, blocks = t.shape[0], t.shape[1] // width
    runs = t.reshape(n // 8, 8, blocks, width // run, run)
    return runs.permute(0, 2, 3, 1, 4).reshape(n // 8, blocks, 8 * width).contiguous()


def round_blocks(x: torch.Tensor, bits: int) -> torch.Tensor:
    """(M, K) rounded to `bits`-bit integers per block of 32 and back: each block by its scale
    max|x| / (2^(bits-1) - 1) (int8: ggml's Q8_0), what gguf-q8's kernel multiplies."""
    blocks = x.reshape(x.shape[0], -1, BLOCK)
    scale = blocks.abs().amax(-1, keepdim=True) / (2 ** (bits - 1) - 1)
    rounded = torch.where(scale > 0, torch.round(blocks / scale), 0.0) * scale
    return rounded.reshape(x.shape)


class BlockLinear(nn.Module):
    """y = x W^T (+ bias), W held as the file's blocks: `q` (4-bit: packed two a byte; Q8_0: int8 as
    bytes), `d` and `m` fp16 per 32 weights, in the file's order or interleaved by eight outputs
    (`interleaved`); activations rounded per block of 32 to `activation_bits` (8 or 16) integers."""

    def __init__(self, blocks: Blocks, bias: torch.Tensor | None, activation_bits: int):
        super().__init__()
        load_kernel()
        self.kind, self.activation_bits = blocks.kind, activation_bits
        self.out_features, self.in_features = blocks.shape
        q = blocks.q.view(torch.uint8) if blocks.kind == "Q8_0" else pack_nibbles(blocks.q)
        d, m = blocks.d, blocks.m
        if interleaved(blocks.kind, activation_bits, self.out_features):
            q, d, m = interleave(q, BLOCK // 2), interleave(d, 1), None if m is None else interleave(m, 1)
        self.register_buffer("q", q.contiguous())
        self.register_buffer("d", d.contiguous())
        self.register_buffer("m", None if m is None else m.contiguous())
        self.bias = None if bias is None else nn.Parameter(bias.detach().float(), requires_grad=False)

    def weight_fp32(self) -> torch.Tensor:
        """The blocks dequantized by ggml's formula: the fp32 weight the file means."""
        q, d, m = self.q, self.d, self.m  # buffers (nn.Module types its attributes as Tensor | Module)
        assert isinstance(q, torch.Tensor) and isinstance(d, torch.Tensor)
        return gguf_dequantize(q, d, m if isinstance(m, torch.Tensor) else None, self.kind)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).float()
        if rows.shape[0] >= PREFILL_ROWS:
            out = F.linear(round_blocks(rows, self.activation_bits), self.weight_fp32())
        else:
            m = self.m if isinstance(self.m, torch.Tensor) else None
            out = gguf_mm(rows, self.q, self.d, m, self.kind, self.activation_bits)  # type: ignore[arg-type]
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)


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


def pack_gguf(model: Any, blocks: dict[str, Blocks], precision: str) -> int:
    """Replace the linear layers and embeddings whose GGUF tensors are in a block format (`blocks`,
    by parameter name) by those blocks, multiplying activations as `precision` rounds them; returns how many were replaced. Each layer's blocks must
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
        if isinstance(module, nn.Linear):
            packed: nn.Module = BlockLinear(found, module.bias, ACTIVATION_BITS[precision][found.kind])
        else:
            packed = BlockEmbedding(found)
        parent, _, attribute = name.rpartition(".")
        setattr(model.get_submodule(parent), attribute, packed)
        replaced += 1
    return replaced
