"""Dense attention for one query per sequence (a decode step), as plain tensor ops.

PyTorch's CPU SDPA kernel is built for many queries: for one query against a static cache it cost
~160 us per layer here, a third of a compiled decode step; the compiler fuses these few ops into the
rest of the step instead. Run eagerly they materialise every product, which is slower than SDPA, so
the dense eager path keeps SDPA; the sparse decode step uses this on the few keys it gathers.
"""

from __future__ import annotations

import torch


def one_query_attention(
    query: torch.Tensor,  # (B, H, 1, D)
    key: torch.Tensor,  # (B, Hkv, Lk, D)
    value: torch.Tensor,  # (B, Hkv, Lk, D)
    mask: torch.Tensor | None,  # (B or 1, Hkv or 1, 1, Lk): bool (True = attend) or additive
    scaling: float | None,
    position_bias: torch.Tensor | None = None,  # (B or 1, H, 1, Lk) additive, e.g. T5
) -> torch.Tensor:
    """Returns (B, 1, H, D), the layout transformers' attention functions return."""
    b, h, _, d = query.shape
    hkv, length = key.shape[1], key.shape[2]
    groups = h // hkv
    scale = scaling if scaling is not None else d**-0.5
    # Query heads sharing a KV head become rows of one matmul, so each key is read once.
    q = query.reshape(b, hkv, groups, d)
    # The scores as a batched matmul: as a fused reduction the compiler recomputed the query's rotary
    # embedding (a sin and a cos per element) for every key, 220 us a layer; a matmul takes the query
    # computed once. The weighted sum of values stays a reduction, which the compiler fuses.
    scores = torch.matmul(q.float(), key.float().transpose(-1, -2)) * scale  # (B, Hkv, G, Lk)
    if position_bias is not None:
        scores = scores + position_bias.reshape(position_bias.shape[0], hkv, groups, length).float()
    if mask is not None:
        mask = mask.reshape(mask.shape[0], -1, 1, length)  # per KV head when keys were picked per head
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask.float()
    weights = torch.softmax(scores, dim=-1)
    out = (weights.unsqueeze(-1) * value.unsqueeze(2).float()).sum(3)  # (B, Hkv, G, D)
    return out.to(value.dtype).reshape(b, h, 1, d).transpose(1, 2)
