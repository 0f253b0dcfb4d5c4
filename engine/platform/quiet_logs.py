"""Silence a few expected, repeated messages of libraries the engine uses; imported first by the
package, before any of them loads (transformers imports torchao when it is installed)."""

from __future__ import annotations

import logging

import torch


class _DropMessage(logging.Filter):
    def __init__(self, fragment: str):
        super().__init__()
        self.fragment = fragment

    def filter(self, record: logging.LogRecord) -> bool:
        return self.fragment not in record.getMessage()


def _drop_log_message(logger_name: str, fragment: str) -> None:
    logging.getLogger(logger_name).addFilter(_DropMessage(fragment))


# bitsandbytes logs "inputs will be cast ... to float16" on every int8 matmul with fp32 activations
# (thousands of lines per request); the cast is expected.
_drop_log_message("bitsandbytes.autograd._functions", "will be cast")
# torchao's wheel carries CUDA-only extensions that fail to load on a CPU machine, with a warning each
# at import; the kernels used here are PyTorch's.
if not torch.cuda.is_available():
    _drop_log_message("torchao", "Failed to load")
