"""Second moments C0_l = Σ k kᵀ / token count of the rewrite modules' inputs over a text corpus.

All requested layers are read in one forward pass per batch (forward pre-hooks on the rewrite modules), and
the forward stops after the deepest one. Σ k kᵀ is symmetric, so only its upper blocks are multiplied (about
half the work of a full K Kᵀ, which otherwise costs more than a block's forward) and the lower triangle is
mirrored at the end. Sums accumulate in float64; the result is stored in `dtype` on CPU.
The cache is content-addressed: each layer's C0 is a safetensors blob in the ledger's blob store, found through
`<store root>/stats-index/<key>.json`, where key = sha256 of canonical JSON of (model state hash, layer,
corpus sha256, sample count, dtype, rewrite module name).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from contextlib import suppress
from pathlib import Path

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from editor.activations import StopForward, hooked, pad
from editor.hashing import file_sha256
from editor.model import DTYPES, LoadedModel
from ledger.errors import LedgerError
from ledger.records import canonical_json
from ledger.store import ContentStore

STATS_FORMAT = 2  # part of the cache key: bump when the computation changes (2: upper blocks, mirrored)
INDEX_DIR = "stats-index"
GRAM_BLOCKS = 8  # column blocks of Σ k kᵀ: (b + 1) / 2b of the full product's work, still large GEMMs


def read_texts(texts: Iterable[str], sample_count: int) -> list[str]:
    chosen = []
    for text in texts:
        text = text.strip()
        if text:
            chosen.append(text)
            if len(chosen) >= sample_count:
                break
    return chosen


def add_upper_gram(total: torch.Tensor, keys: torch.Tensor, blocks: int = GRAM_BLOCKS) -> None:
    """total[i, j] += Σ_t keys[t, i] keys[t, j] for the blocks on or above the diagonal (float32 products,
    float64 sums). The blocks below stay untouched: `mirror_upper` completes the matrix once, at the end."""
    width = keys.shape[1]
    step = -(-width // blocks)
    for start in range(0, width, step):
        total[start : start + step, start:] += (keys[:, start : start + step].T @ keys[:, start:]).to(total.dtype)


def mirror_upper(total: torch.Tensor) -> torch.Tensor:
    """The symmetric matrix whose upper triangle (diagonal included) is `total`'s."""
    return torch.triu(total) + torch.triu(total, diagonal=1).T


def second_moments(
    loaded: LoadedModel,
    layers: Sequence[int],
    texts: Iterable[str],
    sample_count: int,
    batch_size: int = 16,
    max_length: int = 256,
    dtype: str = "float32",
    progress: bool = True,
) -> dict[int, torch.Tensor]:
    """C0 of every layer in `layers` over the first `sample_count` non-empty texts: layer -> [d_ff, d_ff]."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    chosen = read_texts(texts, sample_count)
    if not chosen:
        raise ValueError("texts: the corpus has no non-empty text")
    arch, model, tokenizer = loaded.arch, loaded.model, loaded.tokenizer
    config = model.config
    positions = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
    max_length = min(max_length, positions) if positions else max_length
    layers = sorted(set(layers))
    sums = {
        layer: torch.zeros(arch.d_ff, arch.d_ff, dtype=torch.float64, device=loaded.device)
        for layer in layers
    }
    tokens = 0
    token_mask: list[torch.Tensor] = []

    def accumulate(layer: int):
        def hook(module: nn.Module, args: tuple) -> None:
            keys = args[0][token_mask[0]].to(torch.float32)  # non-padding tokens only
            add_upper_gram(sums[layer], keys)
            if layer == layers[-1]:
                raise StopForward

        return hook

    handles = [
        arch.rewrite_module(model, layer).register_forward_pre_hook(accumulate(layer)) for layer in layers
    ]
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with hooked(handles), torch.no_grad(), Progress(*columns, disable=not progress, transient=True) as bar:
        task = bar.add_task(f"statistics, layers {layers}", total=len(chosen))
        for start in range(0, len(chosen), batch_size):
            batch = chosen[start : start + batch_size]
            sequences = [list(tokenizer(t)["input_ids"])[:max_length] for t in batch]
            ids, mask = pad(sequences, tokenizer.pad_token_id, loaded.device)
            token_mask[:] = [mask.bool()]
            tokens += int(mask.sum())
            with suppress(StopForward):
                model.base_model(input_ids=ids, attention_mask=mask, use_cache=False)
            bar.advance(task, len(batch))
    return {layer: (mirror_upper(sums[layer]) / tokens).to("cpu", DTYPES[dtype]) for layer in layers}


def second_moments_one_layer_per_pass(
    loaded: LoadedModel, layers: Sequence[int], texts: Iterable[str], sample_count: int, **options
) -> dict[int, torch.Tensor]:
    """The reference's way (one corpus pass per layer); kept only to measure what one pass saves."""
    chosen = read_texts(texts, sample_count)
    return {
        layer: second_moments(loaded, [layer], chosen, sample_count, **options)[layer] for layer in layers
    }


def stats_key(
    model_state_hash: str, layer: int, corpus_sha256: str, sample_count: int, dtype: str, module_name: str
) -> str:
    return hashlib.sha256(
        canonical_json(
            {
                "format": STATS_FORMAT,
                "model": model_state_hash,
                "layer": layer,
                "corpus": corpus_sha256,
                "samples": sample_count,
                "dtype": dtype,
                "module": module_name,
            }
        ).encode()
    ).hexdigest()


def _cached(store: ContentStore, key: str) -> tuple[torch.Tensor, str] | None:
    entry = store.read_index(INDEX_DIR, key)
    try:
        sha = entry["blob"] if entry else None
        return (load_safetensors(store.get(sha))["c0"], sha) if sha else None
    except (ValueError, KeyError, TypeError, LedgerError):  # a broken index entry or blob: recompute
        return None


def cached_second_moments(
    loaded: LoadedModel,
    layers: Sequence[int],
    corpus_path: Path,
    sample_count: int,
    dtype: str,
    store: ContentStore | None,
    model_state_hash: str,
    progress: bool = True,
) -> tuple[dict[int, torch.Tensor], dict[int, str]]:
    """C0 per layer from the cache where present, the missing layers computed in one pass and stored.
    Returns the tensors and the sha256 of each layer's safetensors blob."""
    corpus_path = Path(corpus_path)
    corpus_sha = file_sha256(corpus_path)
    keys = {
        layer: stats_key(
            model_state_hash,
            layer,
            corpus_sha,
            sample_count,
            dtype,
            loaded.arch.rewrite_template.format(layer),
        )
        for layer in layers
    }
    c0: dict[int, torch.Tensor] = {}
    shas: dict[int, str] = {}
    if store is not None:
        for layer, key in keys.items():
            hit = _cached(store, key)
            if hit is not None:
                c0[layer], shas[layer] = hit
    missing = [layer for layer in layers if layer not in c0]
    if missing:
        with open(corpus_path, encoding="utf-8") as handle:
            computed = second_moments(loaded, missing, handle, sample_count, dtype=dtype, progress=progress)
        for layer, moment in computed.items():
            data = save_safetensors({"c0": moment.contiguous()})
            sha = store.put(data) if store is not None else hashlib.sha256(data).hexdigest()
            if store is not None:
                store.write_index(INDEX_DIR, keys[layer], {"blob": sha, "key": keys[layer], "layer": layer})
            c0[layer], shas[layer] = moment, sha
    return c0, shas
