"""The attention mask as the studio's kernels read it: transformers builds it once per forward
(`studio_mask`, registered in AttentionMaskInterface) and every layer's attention reads its shape,
its padding and, per pattern, its sparse plan (built once, shared across layers)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch
from transformers.masking_utils import (
    and_masks,
    causal_mask_function,
    padding_mask_function,
    prepare_padding_mask,
    sdpa_mask,
)

from engine.attention.blocked import MaskShape, SparsePlan, build_plan
from engine.attention.choice import SparseSettings
from engine.attention.flex import flex_block_mask

T = TypeVar("T")


class StudioMask:
    """What the mask interface hands to every layer of one forward: the arguments of the mask,
    materialised lazily (dense) or as a sparse plan, once per forward and shared by all layers."""

    def __init__(
        self, *, batch_size, q_length, kv_length, q_offset, kv_offset, mask_function, attention_mask, **rest
    ) -> None:
        self.shape = MaskShape(batch_size, q_length, kv_length, q_offset, kv_offset)
        self.attention_mask = attention_mask
        self.mask_function = mask_function
        self._sdpa_kwargs: dict[str, Any] = {
            "batch_size": batch_size,
            "q_length": q_length,
            "kv_length": kv_length,
            "q_offset": q_offset,
            "kv_offset": kv_offset,
            "mask_function": mask_function,
            "attention_mask": attention_mask,
            **{k: rest[k] for k in ("allow_is_causal_skip", "allow_is_bidirectional_skip", "device") if k in rest},
        }
        self._dense: torch.Tensor | str | None = "unset"
        self._plans: dict[tuple, SparsePlan] = {}
        self._one_query_keys: dict[tuple, tuple] = {}
        self._block_masks: dict[tuple, tuple] = {}
        self._shared: dict[tuple, Any] = {}

    def once(self, key: tuple, make: Callable[[], T]) -> T:
        """`make()` the first time a layer of this forward asks for `key`; later layers share it."""
        if key not in self._shared:
            self._shared[key] = make()
        return self._shared[key]

    def dense(self) -> torch.Tensor | None:
        if isinstance(self._dense, str):
            self._dense = sdpa_mask(**self._sdpa_kwargs)
        return self._dense

    def model_mask(self):
        """The model's own mask rule (causal / bidirectional / overlays) with padding folded in."""
        padding = self.key_padding()
        if padding is None:
            return self.mask_function
        return and_masks(self.mask_function, padding_mask_function(padding))

    def key_padding(self) -> torch.Tensor | None:
        """The padding mask by absolute key position (what the model's mask rule indexes); None: none."""
        return prepare_padding_mask(self.attention_mask, self.shape.kv_length, self.shape.kv_offset)

    def key_counts(self) -> torch.Tensor | None:
        """(B, kv_length) bool over this forward's key rows: which hold data (padding: False); None: all."""
        padding = self.key_padding()
        offset = self.shape.kv_offset
        return None if padding is None else padding[:, offset : offset + self.shape.kv_length]

    def query_positions(self, positions: torch.Tensor | None, device: torch.device) -> torch.Tensor:
        """Each sequence's query position (B, 1) in a one-query step: given by a batch whose sequences
        stand at different positions; else the mask's offset."""
        if positions is None:
            positions = torch.as_tensor(self.shape.q_offset, device=device).reshape(-1)[:1]
        return positions.reshape(-1, 1)

    def one_query_keys(
        self, pattern, settings: SparseSettings, kv_len: int, device: torch.device, positions: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """For a one-query (decode) step, once per forward: per sequence, the cache rows to read ((B, keys);
        None: all of them) and which of those its query attends to, (B, 1, 1, keys) bool with the model's
        own mask (causality, padding) folded in. Static shapes, so a compiled step traces it."""
        key = (pattern.name, settings, kv_len)
        if key not in self._one_query_keys:
            offset = self.shape.kv_offset
            positions = self.query_positions(positions, device)
            allowed = self.dense()
            picked = pattern.decode_keys(positions, offset + kv_len, settings)
            if picked is None:  # no fixed-size set: the pattern's rule over the whole cache
                rows, keep = None, pattern.rule(positions, offset + torch.arange(kv_len, device=device), settings)
            else:
                absolute, valid = picked
                rows, keep = (absolute - offset).clamp(0, kv_len - 1), valid & (absolute >= offset)
            keep = keep[:, None, None, :]
            if allowed is not None:
                if rows is not None:
                    allowed = allowed.expand(len(rows), -1, -1, -1).gather(-1, rows[:, None, None, :])
                keep = keep & allowed
            self._one_query_keys[key] = rows, keep
        return self._one_query_keys[key]

    def plan(self, pattern, settings: SparseSettings, groups: int, device: torch.device) -> SparsePlan:
        key = (pattern.name, settings, groups)
        if key not in self._plans:
            self._plans[key] = build_plan(
                pattern, settings, self.shape, model_mask=self.model_mask(), groups=groups, device=device
            )
        return self._plans[key]

    def block_mask(self, pattern, settings: SparseSettings, device: torch.device):
        """(FlexAttention BlockMask, pairs its kept blocks hold), once per forward."""
        key = (pattern.name, settings)
        if key not in self._block_masks:
            no_padding = self.attention_mask is None or bool(self.attention_mask.all())
            self._block_masks[key] = flex_block_mask(
                pattern,
                settings,
                self.shape,
                model_mask=self.mask_function if no_padding else self.model_mask(),
                device=device,
                cacheable=no_padding,
            )
        return self._block_masks[key]


def studio_mask(
    batch_size: int,
    q_length: int,
    kv_length: int,
    q_offset: int = 0,
    kv_offset: int = 0,
    mask_function=causal_mask_function,
    attention_mask: torch.Tensor | None = None,
    **kwargs,
) -> StudioMask:
    return StudioMask(
        batch_size=batch_size,
        q_length=q_length,
        kv_length=kv_length,
        q_offset=q_offset,
        kv_offset=kv_offset,
        mask_function=mask_function,
        attention_mask=attention_mask,
        **kwargs,
    )
