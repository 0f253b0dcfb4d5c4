"""The `gguf` precision: a GGUF's own blocks, decoded exactly and mapped onto PyTorch's packed-int4
kernel (engine.models.gguf_blocks, engine.models.packed). Synthetic blocks come from gguf-py's own
quantizers, the reference is gguf-py's own dequantization (ggml's formulas)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType, quants
from torch import nn

from engine.models.gguf_blocks import BLOCK, FORMATS, Blocks, decode, load_blocks, save_blocks
from engine.models.packed import KERNEL_DTYPE, BlockEmbedding, Int4Linear, _int4_parts, pack_gguf

ROWS, COLUMNS = 32, 4 * BLOCK


def _weights(seed: int = 0) -> np.ndarray:
    """Rows of every kind a file holds: ordinary, tiny and huge scales, blocks of one repeated value."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((ROWS, COLUMNS)).astype(np.float32) * 0.05
    w[1] *= 1e-4  # tiny scales (fp16 subnormal territory)
    w[2] *= 1e3  # large ones (d near fp16's top for 4 bits)
    w[3] = 0.25  # all-equal blocks: Q4_1's d is 0, Q4_0's and Q8_0's q saturate
    w[4, :BLOCK] = -3.0
    w[5] = 0.0
    w[6, ::2] = -w[6, 1::2]  # symmetric blocks
    return w


def _raw(kind: str, w: np.ndarray) -> np.ndarray:
    return quants.quantize(w, GGMLQuantizationType[kind])


@pytest.mark.parametrize("kind", FORMATS)
def test_decoded_blocks_dequantize_exactly_as_ggml(kind):
    raw = _raw(kind, _weights())
    blocks = decode(kind, raw, COLUMNS)
    reference = quants.dequantize(raw, GGMLQuantizationType[kind]).reshape(ROWS, COLUMNS)
    assert blocks.shape == (ROWS, COLUMNS)
    assert torch.equal(blocks.dequantize(), torch.from_numpy(reference))  # bit for bit
    expected_range = (0, 15) if kind != "Q8_0" else (-128, 127)
    assert expected_range[0] <= int(blocks.q.min()) and int(blocks.q.max()) <= expected_range[1]


@pytest.mark.parametrize("kind", FORMATS)
def test_the_kernels_convention_holds_the_blocks(kind):
    """(q - 8) * scale + zero over the int4 layers adds up to ggml's weights: exactly where fp32 holds
    the sums exactly, else within fp32's rounding of them."""
    blocks = decode(kind, _raw(kind, _weights(1)), COLUMNS)
    total = torch.zeros(ROWS, COLUMNS)
    for q, scale, zero in _int4_parts(blocks):
        assert q.dtype == torch.uint8 and int(q.max()) <= 15
        groups = (q.float() - 8).view(ROWS, -1, BLOCK) * scale[..., None] + zero[..., None]
        total += groups.view(ROWS, COLUMNS)
    torch.testing.assert_close(total, blocks.dequantize(), rtol=2e-7, atol=0.0)


@pytest.mark.parametrize("kind", FORMATS)
def test_a_packed_layer_computes_the_files_matmul(kind):
    """The integers are the file's; each scale and zero is the mapping's rounded once to bf16, so each
    weight moves by at most 2^-8 of |(q - 8) scale| + |zero|; the kernel computes with those weights."""
    blocks = decode(kind, _raw(kind, _weights(2)), COLUMNS)
    layer = Int4Linear(blocks, bias=None)
    effective, bound = torch.zeros(ROWS, COLUMNS), torch.zeros(ROWS, COLUMNS)
    for i, (q, scale, zero) in enumerate(_int4_parts(blocks)):
        stored = getattr(layer, f"scales_zeros{i}")
        assert stored.dtype == KERNEL_DTYPE
        assert torch.equal(stored, torch.stack([scale, zero], -1).transpose(0, 1).to(KERNEL_DTYPE))
        steps = (q.float() - 8).view(ROWS, -1, BLOCK)
        rounded_scale, rounded_zero = stored.float().transpose(0, 1).unbind(-1)
        effective += (steps * rounded_scale[..., None] + rounded_zero[..., None]).view(ROWS, COLUMNS)
        bound += ((steps * scale[..., None]).abs() + zero[..., None].abs()).view(ROWS, COLUMNS) * 2**-8
    assert ((effective - blocks.dequantize()).abs() <= bound).all()
    x = torch.randn(3, 5, COLUMNS)
    out = layer(x)
    assert out.shape == (3, 5, ROWS) and out.dtype == torch.float32
    expected = x.to(KERNEL_DTYPE).float() @ effective.T  # the kernel's inputs are bf16 too
    # fp32 accumulation, a bf16 result: within a few bf16 steps of each output's own size
    terms = x.to(KERNEL_DTYPE).float().abs() @ effective.abs().T
    assert ((out - expected).abs() <= 2**-7 * terms + 1e-6).all()


def test_an_embedding_reads_its_rows_exactly():
    blocks = decode("Q8_0", _raw("Q8_0", _weights(3)), COLUMNS)
    ids = torch.tensor([[0, 3, 3, 31], [5, 2, 1, 0]])
    assert torch.equal(BlockEmbedding(blocks)(ids), blocks.dequantize()[ids])


class _Tiny(nn.Module):
    """A model shaped like SmolLM2's: an embedding tied to the output layer, and a layer the kernel refuses."""

    def __init__(self, blocks: dict[str, Blocks]):
        super().__init__()
        self.embed = nn.Embedding(ROWS, COLUMNS)
        self.proj = nn.Linear(COLUMNS, ROWS, bias=False)
        self.odd = nn.Linear(COLUMNS, 24, bias=False)  # 24 rows: not a multiple of 16
        self.head = nn.Linear(COLUMNS, ROWS, bias=False)
        self.head.weight = self.embed.weight  # tied
        with torch.no_grad():
            for name in ("embed", "proj", "odd"):
                getattr(self, name).weight.copy_(blocks[f"{name}.weight"].dequantize())


def _tiny_blocks() -> dict[str, Blocks]:
    odd = np.random.default_rng(4).standard_normal((24, COLUMNS)).astype(np.float32)
    return {
        "embed.weight": decode("Q8_0", _raw("Q8_0", _weights(5)), COLUMNS),
        "proj.weight": decode("Q4_1", _raw("Q4_1", _weights(6)), COLUMNS),
        "odd.weight": decode("Q4_0", _raw("Q4_0", odd), COLUMNS),
    }


def test_pack_gguf_replaces_tied_layers_and_keeps_what_the_kernel_refuses(tmp_path):
    blocks = _tiny_blocks()
    save_blocks(blocks, tmp_path / "blocks.safetensors")
    loaded = load_blocks(tmp_path / "blocks.safetensors")
    assert {name: b.kind for name, b in loaded.items()} == {name: b.kind for name, b in blocks.items()}
    model = _Tiny(blocks)
    assert pack_gguf(model, loaded) == 3  # embed, proj and the tied head
    assert isinstance(model.embed, BlockEmbedding) and isinstance(model.proj, Int4Linear)
    assert isinstance(model.head, Int4Linear) and model.head.halves == 2  # Q8_0: two 4-bit halves
    assert type(model.odd) is nn.Linear  # the kernel's fallback: float weights as they were


def test_blocks_that_do_not_match_the_loaded_weight_are_not_used():
    blocks = _tiny_blocks()
    model = _Tiny(blocks)
    with torch.no_grad():
        model.proj.weight[0, 0] += 1e-3  # e.g. a name map or a row order gone wrong
    pack_gguf(model, blocks)
    assert type(model.proj) is nn.Linear and isinstance(model.embed, BlockEmbedding)
