"""Precision -> loading arguments, in one table. Unsupported combinations fail with the alternatives."""

from __future__ import annotations

import logging
from typing import Any

import torch

from .errors import PrecisionError
from .settings import settings

# `auto` on CPU is fp32: measured with `python -m engine.bench precision` on the embedded model
# (2-core AMD EPYC, avx512_bf16; tables in assets/bench/). fp32 and fp16 reproduce the reference
# greedy tokens; bf16, int8, nf4, fp4 do not. fp16 decodes 2.1x faster on a 32-token chat prompt
# but prefills 3.9x slower and decodes 1.8x slower at 2048 tokens (CPUs without native fp16
# matmul convert), so fp32 is the fastest choice that is correct for every task.
CPU_AUTO = "fp32"
CUDA_AUTO = "fp16"

FLOAT_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
QUANTIZED = ("int8", "nf4", "fp4")


def resolve_device() -> torch.device:
    """CUDA when present, else CPU; STUDIO_DEVICE overrides (e.g. "cpu" on a GPU machine)."""
    name = settings().device or ("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_precision(precision: str, device: torch.device) -> str:
    """The concrete precision `auto` stands for on this device (the model cache calls this, once per request)."""
    if precision == "auto":
        return CUDA_AUTO if device.type == "cuda" else CPU_AUTO
    return precision


def supported_precisions(device: torch.device) -> list[str]:
    names = ["fp32", "fp16"]
    if device.type != "cuda" or torch.cuda.is_bf16_supported():
        names.append("bf16")
    if _bitsandbytes_available():
        names.extend(QUANTIZED)
    return names


def _bitsandbytes_available() -> bool:
    try:
        import bitsandbytes  # noqa: F401
    except Exception:  # a broken native library raises more than ImportError
        return False
    return True


def check_supported(precision: str, device: torch.device) -> None:
    """Part of the engine's front-door validation (service.validate_options)."""
    available = supported_precisions(device)
    if precision not in (*available, "auto"):
        raise PrecisionError(
            f"Precision {precision!r} is not available on {device.type}; choose one of: {', '.join(available)}."
        )


def compute_dtype(device: torch.device) -> torch.dtype:
    """dtype of the non-quantized parts and of 4-bit matmuls (STUDIO_4BIT_COMPUTE overrides)."""
    if override := settings().four_bit_compute:
        return FLOAT_DTYPES[override]
    return torch.float16 if device.type == "cuda" else torch.float32


def _quiet_int8_cast_warning() -> None:
    """bitsandbytes logs "inputs will be cast ... to float16" on every int8 matmul with fp32
    activations (thousands of lines per request); the cast is expected, so drop that one message."""
    logger = logging.getLogger("bitsandbytes.autograd._functions")
    if not any(isinstance(f, _DropInt8Cast) for f in logger.filters):
        logger.addFilter(_DropInt8Cast())


class _DropInt8Cast(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "will be cast" not in record.getMessage()


def load_kwargs(precision: str, device: torch.device) -> dict[str, Any]:
    """Keyword arguments for `from_pretrained` that realise the (resolved, checked) `precision` on `device`."""
    if precision in FLOAT_DTYPES:
        return {"dtype": FLOAT_DTYPES[precision]}
    from transformers import BitsAndBytesConfig

    dtype = compute_dtype(device)
    if precision == "int8":
        _quiet_int8_cast_warning()
        config = BitsAndBytesConfig(load_in_8bit=True)
    else:
        config = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=precision,
            bnb_4bit_compute_dtype=dtype,
        )
    return {"quantization_config": config, "dtype": dtype, "device_map": {"": str(device)}}
