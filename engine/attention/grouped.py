"""SDPA for a few queries per sequence against grouped key/value heads, without copying the keys.

A speculating step (engine.runtime.step.verify_step) asks for each row's last token and its guesses:
a few queries, a 4D mask of its own, and a model whose query heads share key/value heads (GQA).
transformers' SDPA path then copies every key and value once per query head of their group
(`repeat_kv`: the embedded model's whole cache three times over, each layer, each checking step:
14 ms of a 120 ms eager 4-token step, measured). Here each key head's query heads and positions
become one axis of queries instead, so SDPA reads each key once; each query's own softmax is
unchanged.
"""

from __future__ import annotations

import torch


def grouped_query_attention(
    query: torch.Tensor,  # (B, H, W, D)
    key: torch.Tensor,  # (B, Hkv, Lk, D)
    value: torch.Tensor,  # (B, Hkv, Lk, D)
    mask: torch.Tensor,  # (B or 1, 1, W, Lk): shared by every head
    scaling: float | None,
) -> torch.Tensor:
    """Returns (B, W, H, D), the layout transformers' attention functions return."""
    b, h, width, d = query.shape
    hkv, length = key.shape[1], key.shape[2]
    groups = h // hkv
    q = query.reshape(b, hkv, groups * width, d)  # head k * groups + g, position j -> row g * width + j
    grouped_mask = mask[:, :, None].expand(mask.shape[0], 1, groups, width, length)
    grouped_mask = grouped_mask.reshape(mask.shape[0], 1, groups * width, length)
    out = torch.nn.functional.scaled_dot_product_attention(q, key, value, attn_mask=grouped_mask, scale=scaling)
    return out.reshape(b, h, width, d).transpose(1, 2).contiguous()
