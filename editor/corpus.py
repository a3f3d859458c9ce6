"""Text for a real model's statistics (C0) when no corpus is at hand: text the unedited model writes itself.

C0 must see the keys the model produces on ordinary text. The model's own samples (from the start-of-text token,
top-k sampling from a recorded seed on a CPU generator: the same draws on any device) are text of the kind it
was trained on; the file written is recorded by its SHA-256 like any other corpus, one sample per line.
"""

from __future__ import annotations

from pathlib import Path

import torch

from editor.model import LoadedModel
from editor.prefix_cache import decode_step

SAMPLE_TOP_K = 40
SAMPLES_PER_FORWARD = 32


@torch.no_grad()
def sample_texts(loaded: LoadedModel, n_texts: int, tokens_per_text: int, seed: int = 0) -> list[str]:
    """`n_texts` samples of `tokens_per_text` tokens each, started from the model's start-of-text token."""
    model, tokenizer = loaded.model, loaded.tokenizer
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    generator = torch.Generator().manual_seed(seed)
    texts: list[str] = []
    for first in range(0, n_texts, SAMPLES_PER_FORWARD):
        rows = min(SAMPLES_PER_FORWARD, n_texts - first)
        ids = torch.full((rows, 1), start, dtype=torch.long, device=loaded.device)
        produced: list[torch.Tensor] = []
        cache = None
        for _ in range(tokens_per_text):
            logits, cache = decode_step(model, ids, cache)
            top = torch.topk(logits.float().cpu(), SAMPLE_TOP_K, dim=-1)
            choice = torch.multinomial(torch.softmax(top.values, dim=-1), 1, generator=generator)
            ids = top.indices.gather(1, choice).to(loaded.device)
            produced.append(ids.cpu())
        for row in torch.cat(produced, dim=1).tolist():
            text = tokenizer.decode(row, skip_special_tokens=True)
            texts.append(" ".join(text.split()))  # one sample per line
    return [text for text in texts if text]


def write_sampled_corpus(loaded: LoadedModel, path: Path, n_texts: int, tokens_per_text: int,
                         seed: int = 0) -> Path:
    """The samples written to `path`, one per line (a corpus file `stats` reads like any other)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(sample_texts(loaded, n_texts, tokens_per_text, seed)) + "\n", encoding="utf-8")
    return path
