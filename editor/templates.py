"""Context templates: "{}" and five short texts the unedited model writes, each followed by ". {}"."""

from __future__ import annotations

import torch

from editor.model import LoadedModel

SEED_WORDS = ("The", "Therefore", "Because", "I", "You")
TOP_K = 5
NEW_TOKENS = 10


@torch.no_grad()
def generate_context_templates(loaded: LoadedModel, seed: int, count: int = len(SEED_WORDS)) -> list[str]:
    """Sampled once per base model from a recorded seed; the lead stores the literal strings. `count` < 5: only
    the first seed words (fewer sequences in every z* step and key read: the speed a real model on CPU needs)."""
    model, tokenizer = loaded.model, loaded.tokenizer
    generator = torch.Generator().manual_seed(seed)  # CPU generator: the same draws on any device
    templates = ["{}"]
    for word in SEED_WORDS[:count]:
        ids = list(tokenizer(word)["input_ids"])
        for _ in range(NEW_TOKENS):
            logits = model(input_ids=torch.tensor([ids], device=loaded.device), use_cache=False).logits[0, -1]
            top = torch.topk(logits.float().cpu(), min(TOP_K, logits.shape[-1]))
            choice = torch.multinomial(torch.softmax(top.values, dim=-1), 1, generator=generator)
            ids.append(int(top.indices[choice]))
        text = tokenizer.decode(ids, skip_special_tokens=True)
        # braces would break str.format on the template; newlines would make it a different prompt
        text = " ".join(text.replace("{", " ").replace("}", " ").split())
        templates.append(f"{text}. {{}}")
    return templates
