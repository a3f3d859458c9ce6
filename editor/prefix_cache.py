"""Keys and values of the positions an optimisation never changes, computed once and reused by every step.

z*'s δ enters at the subject's last token, so every position before it (the prefix) has the same keys and values
at every step. `PrefixCache` is a transformers cache that records them in one forward over the whole sequences
and then, in each step's forward over the rest (the suffix), prepends them to the suffix's own keys and values,
which it does not keep: every step starts from the same prefix.
"""

from __future__ import annotations

import functools
import inspect

import torch
from torch import nn
from transformers.cache_utils import Cache, DynamicLayer


class _PrefixLayer(DynamicLayer):
    """One block's prefix keys/values [sequences, heads, width, head_dim]; None for a block whose attention does
    not run in the steps (it answers with a known output)."""

    def __init__(self, keep: bool, width: int):
        super().__init__()
        self.keep, self.width = keep, width
        self.recording = True
        self.rows: torch.Tensor | None = None
        self.keys_all: torch.Tensor | None = None
        self.values_all: torch.Tensor | None = None

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.recording:
            if self.keep:
                self.keys_all = key_states[..., : self.width, :].detach()
                self.values_all = value_states[..., : self.width, :].detach()
            return key_states, value_states
        if self.keys_all is None:
            raise RuntimeError("a block that was not recorded ran in a step (its prefix is unknown)")
        rows = self.rows.to(self.keys_all.device)  # a block may sit on another device than the model's inputs
        return (
            torch.cat([self.keys_all[rows], key_states], dim=-2),
            torch.cat([self.values_all[rows], value_states], dim=-2),
        )

    def get_seq_length(self) -> int:
        return 0 if self.recording else self.width


class PrefixCache(Cache):
    """Prefix keys/values of the blocks in `kept_blocks`; `width` positions per sequence (a sequence's own prefix
    may be shorter: the attention mask hides the rest). Record with one forward, then `replay(rows)` per step."""

    def __init__(self, n_blocks: int, kept_blocks: range, width: int):
        super().__init__(layers=[_PrefixLayer(block in kept_blocks, width) for block in range(n_blocks)])

    def replay(self, rows: torch.Tensor) -> PrefixCache:
        """From now on, forwards continue the prefixes of sequences `rows` (indices into the recorded batch)."""
        for layer in self.layers:
            layer.recording, layer.rows = False, rows
        return self


def cache_argument(base_model: nn.Module) -> str:
    """The name under which the base model's forward takes a cache (transformers renamed `past_key_values`)."""
    return _cache_argument_of(type(base_model))


@functools.cache
def _cache_argument_of(model_class: type) -> str:  # once per class: decoding asks at every token
    return "cache" if "cache" in inspect.signature(model_class.forward).parameters else "past_key_values"


def decode_step(model: nn.Module, ids: torch.Tensor, cache: Cache | None) -> tuple[torch.Tensor, Cache]:
    """One step of decoding: the last position's logits [rows, vocab] and the cache grown by `ids`, under the
    cache's name in the installed transformers (output field and keyword alike)."""
    output = model(input_ids=ids, use_cache=True, **{cache_argument(model): cache})
    grown = getattr(output, "cache", None)
    return output.logits[:, -1], grown if grown is not None else output.past_key_values
