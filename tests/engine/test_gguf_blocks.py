"""The `gguf` precisions: a GGUF's own blocks, decoded exactly and multiplied by the studio's block
kernel (engine.models.gguf_blocks, engine.models.packed, engine/models/gguf_mm.cpp). Synthetic blocks
come from gguf-py's own quantizers, the reference is gguf-py's own dequantization (ggml's formulas)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType, quants
from torch import nn
from torch._inductor.utils import run_and_get_code

from engine.models.gguf_blocks import BLOCK, FORMATS, Blocks, decode, load_blocks, save_blocks
from engine.models.gguf_group import GROUP_BLOCK_MATMULS
from engine.models.gguf_kernel import KINDS, kernel_variant, load_kernel
from engine.models.packed import (
    PREFILL_ROWS,
    BlockEmbedding,
    BlockLinear,
    interleaved,
    pack_gguf,
    round_blocks,
)
from engine.platform.settings import settings

ROWS, COLUMNS = 32, 4 * BLOCK
WIDE = 75 * BLOCK  # more blocks than the kernel converts the scales of at once (64), and not a multiple of 8


def _weights(seed: int = 0, columns: int = COLUMNS) -> np.ndarray:
    """Rows of every kind a file holds: ordinary, tiny and huge scales, blocks of one repeated value."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((ROWS, columns)).astype(np.float32) * 0.05
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
@pytest.mark.parametrize("bits", [8, 16])
def test_a_layer_holds_the_files_integers_and_scales(kind, bits):
    """Nothing is re-quantized or rounded: the layer's blocks (the kernel's reading of them, which
    prefill multiplies) dequantize to ggml's weights bit for bit, in either layout."""
    blocks = decode(kind, _raw(kind, _weights(1)), COLUMNS)
    layer = BlockLinear(blocks, bias=None, activation_bits=bits)
    assert torch.equal(layer.weight_fp32(), blocks.dequantize())
    assert layer.q.dtype == torch.uint8 and layer.d.dtype == torch.float16
    if interleaved(kind, bits, ROWS):  # 4-bit blocks, int8 x: eight outputs' bytes side by side
        assert layer.q.shape == (ROWS // 8, COLUMNS // BLOCK, 128) and layer.d.shape == (ROWS // 8, COLUMNS // BLOCK, 8)
    elif kind != "Q8_0":
        assert layer.q.shape == (ROWS, COLUMNS // 2)  # two 4-bit weights a byte, as the file stores them


@pytest.mark.parametrize("kind", FORMATS)
@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("outputs", [ROWS, 12])  # 12: not a multiple of 8, so the file's layout
def test_a_rows_product_is_the_same_alone_and_beside_others(kind, bits, outputs):
    """Each output of a row is summed in one order whatever rows share the call (one, a decode batch,
    over 8), so a sequence's greedy tokens cannot depend on its batch through the kernel."""
    blocks = decode(kind, _raw(kind, _weights(2, WIDE)[:outputs]), WIDE)
    layer = BlockLinear(blocks, bias=None, activation_bits=bits)
    x = torch.randn(11, WIDE, generator=torch.Generator().manual_seed(2))
    together = layer(x)
    for start, stop in ((0, 1), (0, 4), (3, 8), (10, 11)):
        assert torch.equal(layer(x[start:stop]), together[start:stop])


def _error_bound(x: torch.Tensor, weights: torch.Tensor, relative: float) -> torch.Tensor:
    """Each output's tolerance, relative to the size of its terms (sum |x w|), so that tiny and
    huge scales are held to the same standard."""
    return relative * (x.abs() @ weights.abs().T) + 1e-30


@pytest.mark.parametrize("kind", FORMATS)
@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("rows", [1, 3, 8, 11, PREFILL_ROWS])  # one decode row, a batch, over 8, prefill (BLAS)
@pytest.mark.parametrize("columns", [COLUMNS, WIDE])
def test_activations_round_each_block_of_x_and_multiply_exactly(kind, bits, rows, columns):
    """x rounded per block of 32 to `bits`-bit integers (scale max|x| / (2^(bits-1) - 1); int8: as
    llama.cpp) and multiplied exactly: the fp32 matmul of the rounded x, on the kernel's path and
    prefill's alike, within half a step of x per weight of the true matmul (int16: ~1e-5 of it)."""
    blocks = decode(kind, _raw(kind, _weights(3, columns)), columns)
    layer = BlockLinear(blocks, bias=None, activation_bits=bits)
    x = torch.randn(rows, columns, dtype=torch.float32)
    x[0, :BLOCK] = 0.0  # an all-zero block: scale 0
    out = layer(x)
    blocked = x.view(rows, -1, BLOCK)
    scale = blocked.abs().amax(-1, keepdim=True) / (2 ** (bits - 1) - 1)
    rounded = (torch.where(scale > 0, torch.round(blocked / scale), 0.0) * scale).reshape(rows, columns)
    assert torch.equal(round_blocks(x, bits), rounded)
    weights = blocks.dequantize()
    expected = (rounded.double() @ weights.double().T).float()
    assert out.shape == (rows, ROWS) and out.dtype == torch.float32
    assert ((out - expected).abs() <= _error_bound(rounded, weights, 1e-5)).all()
    half_step = (scale / 2).expand_as(blocked).reshape(rows, columns)
    assert ((out - x @ weights.T).abs() <= half_step @ weights.abs().T + _error_bound(x, weights, 1e-5)).all()
    if bits == 16:
        assert ((out - x @ weights.T).abs() <= _error_bound(x, weights, 2e-5)).all()


def test_a_bias_is_added_and_the_input_dtype_kept():
    blocks = decode("Q4_1", _raw("Q4_1", _weights(4)), COLUMNS)
    bias = torch.randn(ROWS, dtype=torch.float32)
    layer = BlockLinear(blocks, bias=bias, activation_bits=16)
    x = torch.randn(2, COLUMNS, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    out = layer(x)
    assert out.dtype == torch.float64
    rounded, weights = round_blocks(x.float(), 16), blocks.dequantize()
    expected = rounded @ weights.T + bias
    # relative to the size of the terms, as above: an absolute 1e-5 failed on an output whose terms
    # near 500 cancel (the kernel and BLAS sum in different orders)
    assert ((out.float() - expected).abs() <= _error_bound(rounded, weights, 1e-5) + 1e-5 * bias.abs()).all()


@pytest.mark.parametrize("kind", FORMATS)
@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("rows", [1, 11])
def test_matrices_that_share_their_input_multiply_in_one_call_as_apart(kind, bits, rows):
    """studio::gguf_mm_group: the matrices' products side by side, each bit for bit as its own call
    gives it, whatever their sizes (a layer's q, k and v differ)."""
    layers = [BlockLinear(decode(kind, _raw(kind, _weights(seed)[:n]), COLUMNS), None, bits) for seed, n in
              ((7, ROWS), (8, 16), (9, 3))]  # fmt: skip
    x = torch.randn(rows, COLUMNS, dtype=torch.float32)
    grouped = torch.ops.studio.gguf_mm_group(
        x,
        [layer.q for layer in layers],
        [layer.d for layer in layers],
        [layer.m for layer in layers],
        KINDS[kind],
        bits,
    )
    assert torch.equal(grouped, torch.cat([layer(x) for layer in layers], dim=-1))


class _Projections(nn.Module):
    """A layer's q, k and v (one input), and a matrix of another input."""

    def __init__(self):
        super().__init__()
        self.q, self.k, self.v, self.other = (
            BlockLinear(decode("Q4_1", _raw("Q4_1", _weights(seed)), COLUMNS), None, activation_bits=8)
            for seed in (10, 11, 12, 13)
        )

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.q(x) * self.k(x) + self.v(x) + self.other(y)


# one sequence's step; a batch's, whose slices are strided; a bf16 model's, whose layers cast x each
@pytest.mark.parametrize(("rows", "dtype"), [(1, torch.float32), (3, torch.float32), (1, torch.bfloat16)])
def test_a_compiled_step_groups_the_matmuls_of_one_input(rows, dtype):
    module = _Projections()
    x, y = torch.randn(rows, COLUMNS, dtype=dtype), torch.randn(rows, COLUMNS, dtype=dtype)
    options = {"post_grad_custom_pre_pass": GROUP_BLOCK_MATMULS, "fx_graph_cache": False}
    out, code = run_and_get_code(torch.compile(module, fullgraph=True, options=options), x, y)
    calls = "".join(code)
    assert calls.count("studio.gguf_mm_group.default(") == 1 and calls.count("studio.gguf_mm.default(") == 1
    eager = module(x, y)
    # bf16: the compiled step rounds q * k + v + other once, eager after each op
    tolerance = 1e-6 if dtype == torch.float32 else 0.02 * float(eager.abs().max())
    torch.testing.assert_close(out, eager, rtol=0, atol=tolerance)


def test_an_embedding_reads_its_rows_exactly():
    blocks = decode("Q8_0", _raw("Q8_0", _weights(3)), COLUMNS)
    ids = torch.tensor([[0, 3, 3, 31], [5, 2, 1, 0]])
    assert torch.equal(BlockEmbedding(blocks)(ids), blocks.dequantize()[ids])


class _Tiny(nn.Module):
    """A model shaped like SmolLM2's: an embedding tied to the output layer, and a layer stored in a
    format the kernel does not read."""

    def __init__(self, blocks: dict[str, Blocks]):
        super().__init__()
        self.embed = nn.Embedding(ROWS, COLUMNS, dtype=torch.float32)
        self.proj = nn.Linear(COLUMNS, ROWS, bias=False, dtype=torch.float32)
        self.odd = nn.Linear(COLUMNS, 24, bias=False, dtype=torch.float32)  # F16 in the file: no blocks
        self.head = nn.Linear(COLUMNS, ROWS, bias=False, dtype=torch.float32)
        self.head.weight = self.embed.weight  # tied
        with torch.no_grad():
            for name in ("embed", "proj"):
                getattr(self, name).weight.copy_(blocks[f"{name}.weight"].dequantize())


def _tiny_blocks() -> dict[str, Blocks]:
    return {
        "embed.weight": decode("Q8_0", _raw("Q8_0", _weights(5)), COLUMNS),
        "proj.weight": decode("Q4_1", _raw("Q4_1", _weights(6)), COLUMNS),
    }


def test_pack_gguf_replaces_tied_layers_and_keeps_what_has_no_blocks(tmp_path):
    blocks = _tiny_blocks()
    save_blocks(blocks, tmp_path / "blocks.safetensors")
    loaded = load_blocks(tmp_path / "blocks.safetensors")
    assert {name: b.kind for name, b in loaded.items()} == {name: b.kind for name, b in blocks.items()}
    model = _Tiny(blocks)
    assert pack_gguf(model, loaded, "gguf") == 3  # embed, proj and the tied head
    assert isinstance(model.embed, BlockEmbedding) and isinstance(model.proj, BlockLinear)
    assert isinstance(model.head, BlockLinear) and model.head.kind == "Q8_0"  # the embedding's blocks
    assert type(model.odd) is nn.Linear  # float weights as they were


def test_blocks_that_do_not_match_the_loaded_weight_are_not_used():
    blocks = _tiny_blocks()
    model = _Tiny(blocks)
    with torch.no_grad():
        model.proj.weight[0, 0] += 1e-3  # e.g. a name map or a row order gone wrong
    pack_gguf(model, blocks, "gguf")
    assert type(model.proj) is nn.Linear and isinstance(model.embed, BlockEmbedding)


def test_a_build_lock_left_by_a_killed_process_is_not_waited_for():
    """PyTorch's builder waits for ever on the lock file of a process killed mid-build (a CI run hung
    on one for 90 minutes): the next process loads the kernel all the same."""
    load_kernel()
    left = settings().cache / "kernels" / kernel_variant()[0] / "lock"
    left.touch()
    code = "from engine.models.gguf_kernel import load_kernel; load_kernel()"
    done = subprocess.run([sys.executable, "-c", code], timeout=300, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not left.exists()
