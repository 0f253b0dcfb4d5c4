"""Precision -> loading arguments (and torchao quantization after loading). Unsupported combinations fail with the alternatives."""

from __future__ import annotations

import functools
import os
import shutil
from typing import Any

import torch

from engine.models.precision_menu import PRECISION_CHOICES
from engine.models.registry import ModelSpec
from engine.platform.errors import PrecisionError
from engine.platform.memory import is_out_of_memory
from engine.platform.settings import settings

# `auto` on CPU: the fastest precision whose quality cost against fp32 is at most what llama.cpp's own
# kernels cost (KL <= 0.005, top-1 >= 90%; the rule is bench.auto.auto_choice), from `python -m engine.bench
# decode` on the embedded model (README "Decode speed"). A model loaded from a GGUF gets gguf-q8: its
# own blocks with llama.cpp's arithmetic (KL 0.002), the fastest decode of any precision (1.0x llama.cpp
# on a 2-core AVX2 EPYC) and fp32's prefill; it needs a C++ compiler for its kernel. Otherwise bf16 on a
# CPU with bf16 arithmetic (KL 0.001; int8-wo, faster there, costs KL 0.006), else fp32.
GGUF_CPU_AUTO = "gguf-q8"
BF16_CPU_AUTO = "bf16"
CUDA_AUTO = "fp16"

FLOAT_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
BITSANDBYTES = ("int8", "nf4", "fp4")
TORCHAO = tuple(c.name for c in PRECISION_CHOICES if c.torchao)
GGUF_ONLY = tuple(c.name for c in PRECISION_CHOICES if c.gguf_only)
GGUF_SOURCES = ("embedded", "gguf")  # models loaded from a GGUF file, whose blocks the GGUF precisions run
TORCHAO_BASE = torch.bfloat16  # the weight-only formats' activations: their CPU kernels take bf16
# Weights per int4 scale. Embedded model, fp32's answer teacher-forced: groups of 64 gave KL 0.354 and
# top-1 69% (HQQ's scales: 0.297, 75%), groups of 32 KL 0.051 and 88%, at about the same speed; 128 was slower.
INT4_GROUP = 32


def resolve_device() -> torch.device:
    """CUDA when present, else CPU; STUDIO_DEVICE overrides (e.g. "cpu" on a GPU machine). On
    Hugging Face ZeroGPU hardware, the CPU: there the GPU exists only inside a `@spaces.GPU` call, in
    that call's process, and the engine runs every forward on its own long-lived thread, which is what
    lets it batch users (README: Hugging Face Spaces)."""
    zero_gpu = os.environ.get("SPACES_ZERO_GPU") == "true"  # how Gradio and `spaces` recognise it
    name = settings().device or ("cuda" if torch.cuda.is_available() and not zero_gpu else "cpu")
    return torch.device(name)


def resolve_precision(precision: str, device: torch.device, spec: ModelSpec) -> str:
    """The concrete precision `auto` stands for on this device for the model `spec`; the model cache
    calls this, once per request."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return CUDA_AUTO
    if spec.source in GGUF_SOURCES and _cpp_compiler():
        return GGUF_CPU_AUTO
    return BF16_CPU_AUTO if _native_bf16() else "fp32"


def _native_bf16() -> bool:
    """The CPU has bf16 arithmetic (oneDNN's check; a private op, so absent means no)."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(check and check())


@functools.cache
def _cpp_compiler() -> bool:
    """Inductor compiles CPU steps with a C++ compiler; without one every step stays eager."""
    return any(shutil.which(name) for name in ("g++", "c++", "clang++"))


def supported_precisions(device: torch.device) -> list[str]:
    names = ["fp32", "fp16"]
    if device.type != "cuda" or torch.cuda.is_bf16_supported():
        names.append("bf16")
    if _importable("bitsandbytes"):
        names.extend(BITSANDBYTES)
    if _importable("torchao"):
        names.extend(TORCHAO)
    if device.type == "cpu":  # the block kernel (engine/models/gguf_mm.cpp) is a CPU kernel
        names.extend(GGUF_ONLY)
    return names


@functools.cache
def _importable(module: str) -> bool:
    try:
        __import__(module)
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


def check_source(precision: str, spec: ModelSpec) -> None:
    """A GGUF-only precision needs a model loaded from a GGUF file (the local backend's check)."""
    if precision in GGUF_ONLY and spec.source not in GGUF_SOURCES:
        raise PrecisionError(
            f"Precision {precision!r} runs a GGUF file's own blocks, and {spec.name} is not loaded from a GGUF; "
            "choose int4-wo or int8-wo for low-bit weights."
        )


def compute_dtype(device: torch.device) -> torch.dtype:
    """dtype of the non-quantized parts and of 4-bit matmuls (STUDIO_4BIT_COMPUTE overrides)."""
    if override := settings().four_bit_compute:
        return FLOAT_DTYPES[override]
    return torch.float16 if device.type == "cuda" else torch.float32


def load_kwargs(precision: str, device: torch.device) -> dict[str, Any]:
    """Keyword arguments for `from_pretrained` that realise the (resolved, checked) `precision` on `device`."""
    if precision in FLOAT_DTYPES:
        return {"dtype": FLOAT_DTYPES[precision]}
    if precision in GGUF_ONLY:
        return {"dtype": torch.float32}  # the file's blocks replace the float weights after loading
    if precision in TORCHAO:
        return {"dtype": TORCHAO_BASE}  # quantized after loading (quantize_after_load)
    from transformers import BitsAndBytesConfig

    dtype = compute_dtype(device)
    if precision == "int8":
        config = BitsAndBytesConfig(load_in_8bit=True)
    else:
        config = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=precision,
            bnb_4bit_compute_dtype=dtype,
        )
    return {"quantization_config": config, "dtype": dtype, "device_map": {"": str(device)}}


def _torchao_config(precision: str, device: torch.device):
    from torchao.quantization import Int4WeightOnlyConfig, Int8WeightOnlyConfig

    # set_inductor_config=False: torchao would otherwise change inductor's settings for every model in the process
    if precision == "int8-wo":  # per-channel scales; torch.compile fuses the dequantize into the matmul
        return Int8WeightOnlyConfig(set_inductor_config=False)
    if device.type == "cpu":  # PyTorch's int4 CPU kernel (_weight_int4pack_mm_for_cpu); torchao keeps its layout here
        from torchao.prototype.quantization.int4 import PrototypeInt4WeightOnlyConfig

        return PrototypeInt4WeightOnlyConfig(group_size=INT4_GROUP, set_inductor_config=False)
    # CUDA: the tinygemm layout of PyTorch's int4 CUDA kernel. Written to torchao's API, not yet run on a GPU here.
    return Int4WeightOnlyConfig(
        group_size=INT4_GROUP, int4_packing_format="tile_packed_to_4d", set_inductor_config=False
    )


def _int4_fits(module: torch.nn.Linear) -> bool:
    # the int4 kernels need whole groups along the input and output rows in multiples of 8;
    # other layers (e.g. a 2-label classifier head) stay in bf16
    return module.in_features % INT4_GROUP == 0 and module.out_features % 8 == 0


def quantize_after_load(model: torch.nn.Module, precision: str, device: torch.device) -> None:
    """torchao's weight-only precisions: replace the linear layers' weights in place (no-op otherwise)."""
    if precision not in TORCHAO:
        return
    from torchao.quantization import quantize_

    def linear(module: torch.nn.Module, name: str) -> bool:
        return isinstance(module, torch.nn.Linear) and (precision != "int4-wo" or _int4_fits(module))

    try:
        quantize_(model, _torchao_config(precision, device), filter_fn=linear)
    except (ImportError, RuntimeError, ValueError, AssertionError, NotImplementedError) as exc:
        if is_out_of_memory(exc):
            raise  # not a precision problem: the cache frees memory and says so (engine.models.pool)
        raise PrecisionError(f"torchao could not quantize this model to {precision} ({exc}); try bf16.") from exc


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes the parameters and buffers occupy, counting a quantized tensor by what it stores (a
    torchao tensor reports its logical dtype, which `get_memory_footprint` multiplies out)."""
    seen, total = set(), 0
    for tensor in (*model.parameters(), *model.buffers()):
        if id(tensor) not in seen:
            seen.add(id(tensor))
            total += _stored_bytes(tensor)
    return total


def _stored_bytes(tensor: torch.Tensor) -> int:
    if hasattr(tensor, "__tensor_flatten__") and type(tensor) not in (torch.Tensor, torch.nn.Parameter):
        names, _ = tensor.__tensor_flatten__()
        return sum(_stored_bytes(getattr(tensor, name)) for name in names if getattr(tensor, name) is not None)
    return tensor.numel() * tensor.element_size()
