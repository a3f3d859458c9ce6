"""Reading a model's inner values at chosen tokens: the forwards every step above (keys, z*, statistics, the
derived hyperparameters) runs, with hooks on its blocks and rewrite modules. Sequences are right-padded, so a
token's position is the same as in its unpadded sequence.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from editor.model import LoadedModel

SEQUENCES_PER_FORWARD = 128  # memory bound of one forward; results do not depend on it beyond rounding
NORM_PROBES = (
    "The city is known for its old streets and its river.",
    "She grew up speaking two languages at home.",
    "Because of the rain, the game was played the next day.",
    "I think that the answer is in the book.",
)


def block_hidden(output: torch.Tensor | tuple) -> torch.Tensor:
    """A block's hidden state: recent transformers return a bare tensor, older ones a tuple."""
    return output[0] if isinstance(output, tuple) else output


def with_block_hidden(output: torch.Tensor | tuple, hidden: torch.Tensor) -> torch.Tensor | tuple:
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


class StopForward(Exception):
    """Raised by a hook once everything a forward was run for has been read."""


@contextmanager
def hooked(handles: list) -> Iterator[None]:
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def pad(
    sequences: Sequence[Sequence[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
        mask[row, : len(sequence)] = 1
    return ids.to(device), mask.to(device)


def run_base(loaded: LoadedModel, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
    """The base model's final hidden states, or None when a hook stopped the forward early."""
    try:
        return loaded.model.base_model(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
    except StopForward:
        return None


@torch.no_grad()
def read_at_tokens(
    loaded: LoadedModel,
    sequences: Sequence[Sequence[int]],
    positions: Sequence[int],
    key_layers: Sequence[int] = (),
    block_layers: Sequence[int] = (),
) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
    """Keys (rewrite inputs) and block outputs at one token per sequence, in float32 on CPU."""
    arch, model = loaded.arch, loaded.model
    keys: dict[int, list[torch.Tensor]] = {layer: [] for layer in key_layers}
    blocks: dict[int, list[torch.Tensor]] = {layer: [] for layer in block_layers}
    last = max([*key_layers, *block_layers])
    for start in range(0, len(sequences), SEQUENCES_PER_FORWARD):
        chunk = sequences[start : start + SEQUENCES_PER_FORWARD]
        rows = torch.arange(len(chunk))
        cols = torch.tensor(positions[start : start + SEQUENCES_PER_FORWARD])
        handles = []

        def read_key(layer: int, rows: torch.Tensor, cols: torch.Tensor):
            def hook(module: nn.Module, args: tuple) -> None:
                keys[layer].append(args[0][rows, cols].float().cpu())
                if layer == last and layer not in blocks:
                    raise StopForward

            return hook

        def read_block(layer: int, rows: torch.Tensor, cols: torch.Tensor):
            def hook(module: nn.Module, args: tuple, output) -> None:
                blocks[layer].append(block_hidden(output)[rows, cols].float().cpu())
                if layer == last:
                    raise StopForward

            return hook

        for layer in key_layers:
            handles.append(
                arch.rewrite_module(model, layer).register_forward_pre_hook(read_key(layer, rows, cols))
            )
        for layer in block_layers:
            handles.append(
                arch.hidden_module(model, layer).register_forward_hook(read_block(layer, rows, cols))
            )
        with hooked(handles):
            ids, mask = pad(chunk, loaded.tokenizer.pad_token_id, loaded.device)
            run_base(loaded, ids, mask)
    return (
        {layer: torch.cat(parts) for layer, parts in keys.items()},
        {layer: torch.cat(parts) for layer, parts in blocks.items()},
    )


# ------------------------------------------------------------------------------------------- keys, hidden


def typical_residual_norm(loaded: LoadedModel, layer: int) -> float:
    """Mean norm of block `layer`'s output over the tokens of a few plain sentences (first token excluded)."""
    sequences = [list(loaded.tokenizer(text)["input_ids"]) for text in NORM_PROBES]
    sequences = [s for s in sequences if len(s) > 1]
    norms: list[torch.Tensor] = []
    for position in range(1, max(len(s) for s in sequences)):
        rows = [s for s in sequences if len(s) > position]
        _, blocks = read_at_tokens(loaded, rows, [position] * len(rows), block_layers=[layer])
        norms.append(blocks[layer].norm(dim=1))
    return float(torch.cat(norms).mean())
