"""A GGUF file's quantized blocks as they are, per transformers parameter: the integers and fp16
scales llama.cpp reads, for the `gguf` precision (engine.models.packed) to run without dequantizing.

ggml's block formats (32 weights a block, along a row):
    Q4_0  d (fp16), 16 bytes of 4-bit q        w = d * (q - 8)
    Q4_1  d, m (fp16), 16 bytes of 4-bit q     w = d * q + m
    Q8_0  d (fp16), 32 int8 q                  w = d * q
In the 4-bit formats byte j holds weight j (low nibble) and weight j + 16 (high nibble).

Names and row order follow transformers' own GGUF loader (its name map and its tensor processor,
which e.g. undoes llama.cpp's permutation of the query and key rows): rows move, blocks never split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

BLOCK = 32
FORMATS = ("Q4_0", "Q4_1", "Q8_0")  # the block formats held as they are; any other tensor stays float


@dataclass(frozen=True)
class Blocks:
    """One weight matrix (N rows of K) in a block format: `q` (N, K) integers (uint8 0..15 for the
    4-bit formats, int8 for Q8_0), `d` and `m` (N, K / 32) fp16 (m: Q4_1 only)."""

    kind: str
    q: torch.Tensor
    d: torch.Tensor
    m: torch.Tensor | None = None

    @property
    def shape(self) -> tuple[int, int]:
        rows, columns = self.q.shape
        return rows, columns

    def dequantize(self) -> torch.Tensor:
        """fp32 weights, by ggml's formula (what transformers' loader and the fp32 cache hold)."""
        return dequantize_rows(self.kind, self.q, self.d, self.m)


def dequantize_rows(kind: str, q: torch.Tensor, d: torch.Tensor, m: torch.Tensor | None) -> torch.Tensor:
    """ggml's formula on rows of blocks (q (..., K), d and m (..., K / 32)), in fp32 as ggml computes it."""
    shape = q.shape
    blocks = q.reshape(*shape[:-1], -1, BLOCK).float()
    scale = d.float().unsqueeze(-1)
    if kind == "Q4_0":
        weights = (blocks - 8) * scale
    elif kind == "Q4_1":
        assert m is not None
        weights = blocks * scale + m.float().unsqueeze(-1)
    else:
        weights = blocks * scale
    return weights.reshape(shape)


def decode(kind: str, raw: np.ndarray, columns: int) -> Blocks:
    """Blocks from a tensor's raw bytes (rows x bytes per row, as gguf's reader gives them)."""
    rows = raw.shape[0]
    blocks = raw.reshape(rows, columns // BLOCK, -1)
    d = np.ascontiguousarray(blocks[..., :2]).view(np.float16)[..., 0]
    if kind == "Q8_0":
        q = np.ascontiguousarray(blocks[..., 2:]).view(np.int8).reshape(rows, columns)
        return Blocks(kind, torch.from_numpy(q), torch.from_numpy(d))
    m = np.ascontiguousarray(blocks[..., 2:4]).view(np.float16)[..., 0] if kind == "Q4_1" else None
    packed = blocks[..., 4:] if kind == "Q4_1" else blocks[..., 2:]
    q = np.concatenate([packed & 0x0F, packed >> 4], axis=-1).reshape(rows, columns)  # weights j, then j + 16
    return Blocks(kind, torch.from_numpy(q), torch.from_numpy(d), None if m is None else torch.from_numpy(m))


def read_blocks(gguf: Path, model: Any) -> dict[str, Blocks]:
    """The GGUF's tensors in a block format, keyed by the transformers parameter they load into
    (`model`: the transformers model loaded from that file, for the names and the config)."""
    from gguf import MODEL_ARCH_NAMES, GGUFReader, get_tensor_name_map
    from transformers.modeling_gguf_pytorch_utils import TENSOR_PROCESSORS, TensorProcessor, read_field

    reader = GGUFReader(str(gguf))
    architecture = read_field(reader, "general.architecture")[0]
    processor = TENSOR_PROCESSORS.get(architecture, TensorProcessor)(config=model.config.to_dict())
    arch = next(key for key, name in MODEL_ARCH_NAMES.items() if name == architecture)
    name_map = get_tensor_name_map(arch, model.config.num_hidden_layers)  # gguf's own names <-> transformers'
    names = {}
    for parameter in model.state_dict():
        base, _, suffix = parameter.rpartition(".")
        if (gguf_name := name_map.get_name(base)) is not None:
            names[f"{gguf_name}.{suffix}"] = parameter
    found: dict[str, Blocks] = {}
    for tensor in reader.tensors:
        kind = tensor.tensor_type.name
        if kind not in FORMATS or tensor.name not in names:
            continue
        columns = int(tensor.shape[0])  # ggml lists the fastest-moving dimension first
        blocks = decode(kind, tensor.data, columns)
        m = None if blocks.m is None else _reordered(processor, tensor.name, blocks.m)
        q, d = (_reordered(processor, tensor.name, a) for a in (blocks.q, blocks.d))
        found[names[tensor.name]] = Blocks(kind, q, d, m)
    return found


def _reordered(processor: Any, name: str, rows: torch.Tensor) -> torch.Tensor:
    """The processor's reordering of rows (llama's query and key), the same for each per-row array."""
    return torch.from_numpy(np.ascontiguousarray(processor.process(rows.numpy(), name).weights))


def save_blocks(blocks: dict[str, Blocks], path: Path) -> None:
    """Into a safetensors file beside the converted model (engine.models.embedded): loads then take
    a fraction of a second instead of parsing the GGUF (its tokenizer alone: seconds)."""
    from safetensors.torch import save_file

    tensors = {f"{name}.{part}": getattr(b, part).contiguous() for name, b in blocks.items() for part in ("q", "d", "m")
               if getattr(b, part) is not None}  # fmt: skip
    save_file(tensors, str(path), metadata={name: b.kind for name, b in blocks.items()})


def load_blocks(path: Path) -> dict[str, Blocks]:
    """What `save_blocks` wrote."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as file:
        stored = set(file.keys())
        return {
            name: Blocks(
                kind,
                file.get_tensor(f"{name}.q"),
                file.get_tensor(f"{name}.d"),
                file.get_tensor(f"{name}.m") if f"{name}.m" in stored else None,
            )
            for name, kind in (file.metadata() or {}).items()
        }
