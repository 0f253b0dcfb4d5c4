"""The precisions a user can choose, each with the library and kernel that runs it.

Torch-free: the options, the UI and the docs read it; engine.models.precision turns a name into loading.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PrecisionChoice:
    name: str
    runs_on: str  # the library and kernel, in a few words (the UI's menu and the README show it)
    compiles: bool = True  # the decode step can be compiled (engine.runtime.compile)
    torchao: bool = False  # quantized after loading by torchao (engine.models.precision)
    weight_bits: int = 0  # bits a weight takes (0: auto, resolved per device); a smaller choice fits more
    gguf_only: bool = False  # runs a GGUF file's own blocks (engine.models.packed): models loaded from a GGUF


PRECISION_CHOICES: tuple[PrecisionChoice, ...] = (
    PrecisionChoice(
        "auto",
        "the fastest that keeps quality (KL <= llama.cpp's), measured: gguf-q8 for models from a GGUF on CPU; "
        "else bf16 on CPUs with bf16, fp32 without; fp16 on CUDA",
    ),
    PrecisionChoice("fp32", "PyTorch fp32 matmuls", weight_bits=32),
    PrecisionChoice("fp16", "PyTorch fp16 matmuls (converted on CPUs without fp16 arithmetic)", weight_bits=16),
    PrecisionChoice("bf16", "PyTorch bf16 matmuls", weight_bits=16),
    PrecisionChoice("int8", "bitsandbytes LLM.int8(): 8-bit matmul, outliers in fp16", compiles=False, weight_bits=8),
    PrecisionChoice("nf4", "bitsandbytes NF4: 4-bit weights dequantized at each matmul", compiles=False, weight_bits=4),
    PrecisionChoice("fp4", "bitsandbytes FP4: 4-bit weights dequantized at each matmul", compiles=False, weight_bits=4),
    PrecisionChoice(
        "int8-wo", "torchao int8 weight-only, bf16 activations, fused by torch.compile", torchao=True, weight_bits=8
    ),
    PrecisionChoice(
        "int4-wo",
        "torchao int4 weight-only (groups of 32), bf16 activations, PyTorch's packed-int4 matmul",
        torchao=True,
        weight_bits=4,
    ),
    PrecisionChoice(
        "gguf",
        "the GGUF file's own Q4_0/Q4_1/Q8_0 blocks, not re-quantized, activations rounded per 32 to int16 "
        "(fp32's results to ~1e-5): the studio's block kernel; models from a GGUF, on CPU",
        weight_bits=5,  # 4 bits, and an fp16 scale and minimum per 32 weights
        gguf_only=True,
    ),
    PrecisionChoice(
        "gguf-q8",
        "the GGUF file's own blocks, activations rounded per 32 to int8 as llama.cpp multiplies (int16 for the "
        "Q8_0 output layer): the studio's block kernel; models from a GGUF, on CPU",
        weight_bits=5,
        gguf_only=True,
    ),
)
PRECISION_BY_NAME = {choice.name: choice for choice in PRECISION_CHOICES}
PRECISIONS: tuple[str, ...] = tuple(PRECISION_BY_NAME)
