"""How a fact world's model is made: its word-level tokenizer, a GPT-2 model of the preset's size, the weighted
examples, and the deterministic training (with a `--from` world's subject gate), then how well it knows its facts."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from rich.progress import Progress

from editor.determinism import fixed_threads, numerics, portable_supported
from editor.evaluate import score_targets
from editor.keys import tokens_inside
from editor.optim import Adam
from editor.world_facts import Statement, WorldPreset

EOS, PAD, UNK = "<|endoftext|>", "<pad>", "<unk>"
CONTEXT_LENGTH = 128
OTHER_TOKEN_WEIGHT = 0.1  # loss weight of non-object tokens: enough for fluent text, small enough to learn fast
# A `--from` world trains for at least SOURCE_MIN_STEPS optimizer steps (more epochs for a small file): 200
# invented facts in the preset's 15 epochs of 19 steps were 66% known (measured; the 500-record CounterFact world
# has 77 steps an epoch); smaller batches for more steps did worse (45%). Its MLPs are SOURCE_INNER wide, which
# halves the cost of a step (its facts are a few hundred; the preset's width serves 1,000).
SOURCE_MIN_STEPS = 480
SOURCE_INNER = 512
# ...and for at least SOURCE_EPOCHS epochs (at most twice as many), whatever its preset's: the recipe was measured
# with the default preset's 15, and when that preset went to 10 epochs for its 4,400 facts, the hyphen/digit fact
# set fell from 97% known to 79% (measured).
SOURCE_EPOCHS = 15


def source_epochs(n_statements: int, preset: WorldPreset) -> int:
    """The epochs of a `--from` world: the preset's or SOURCE_EPOCHS, whichever is more, or more still (at most
    twice as many, which bounds the build time of a very small file) so that training takes SOURCE_MIN_STEPS steps."""
    least = max(preset.epochs, SOURCE_EPOCHS)
    wanted = math.ceil(SOURCE_MIN_STEPS / math.ceil(n_statements / preset.batch_size))
    return min(2 * least, max(least, wanted))



def build_tokenizer(texts: list[str]):
    """A word-level tokenizer over every word of `texts` (whitespace/punctuation pre-tokenizer), as a HF tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    pre_tokenizer = pre_tokenizers.Whitespace()
    words: dict[str, None] = {}
    for text in texts:
        for word, _ in pre_tokenizer.pre_tokenize_str(text):
            words[word] = None
    vocab = {EOS: 0, PAD: 1, UNK: 2}
    for word in sorted(words):
        vocab.setdefault(word, len(vocab))
    core = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizer
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token=UNK, pad_token=PAD, eos_token=EOS,
                                   bos_token=EOS, model_max_length=CONTEXT_LENGTH)


def new_model(preset: WorldPreset, vocab_size: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=vocab_size, n_positions=CONTEXT_LENGTH, n_embd=preset.n_embd,
                        n_layer=preset.n_layer, n_head=preset.n_head, n_inner=preset.n_inner,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0,
                        pad_token_id=1)
    return GPT2LMHeadModel(config)


@dataclass(frozen=True)
class Example:
    ids: tuple[int, ...]
    weights: tuple[float, ...]  # loss weight of predicting ids[i] (index 0 is never predicted)
    subject_span: tuple[int, int] | None = None  # first and last token of the subject, where known


def subject_span(tokenizer, prompt: str, subject: str) -> tuple[list[int], tuple[int, int]]:
    """Token ids of `prompt` and the first and last token of the first occurrence of `subject` in it."""
    encoded = tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=True)
    start = prompt.index(subject)
    inside = tokens_inside(encoded["offset_mapping"], start, start + len(subject))
    return list(encoded["input_ids"]), (inside[0], inside[-1])


def encode_examples(tokenizer, statements: list[Statement], fillers: list[str]) -> list[Example]:
    """Facts weigh their object tokens 1 and the rest OTHER_TOKEN_WEIGHT; filler sentences OTHER_TOKEN_WEIGHT."""
    examples = []
    for statement in statements:
        span = None
        if statement.subject is None:
            prompt_ids = tokenizer(statement.prompt, add_special_tokens=False)["input_ids"]
        else:
            prompt_ids, span = subject_span(tokenizer, statement.prompt, statement.subject)
        target_ids = tokenizer(" " + statement.target, add_special_tokens=False)["input_ids"]
        weights = [OTHER_TOKEN_WEIGHT] * len(prompt_ids) + [1.0] * len(target_ids)
        examples.append(Example(tuple(prompt_ids + target_ids), tuple(weights), span))
    for sentence in fillers:
        ids = tokenizer(sentence, add_special_tokens=False)["input_ids"]
        examples.append(Example(tuple(ids), tuple([OTHER_TOKEN_WEIGHT] * len(ids))))
    return [e for e in examples if 1 < len(e.ids) <= CONTEXT_LENGTH]


def collate(batch: list[Example], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    width = max(len(e.ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    weights = torch.zeros((len(batch), width))
    for row, example in enumerate(batch):
        ids[row, : len(example.ids)] = torch.tensor(example.ids)
        mask[row, : len(example.ids)] = 1
        weights[row, : len(example.ids)] = torch.tensor(example.weights)
    return ids, mask, weights


def build_numerics() -> str:
    return "portable" if portable_supported() else "native"


@contextmanager
def deterministic_build() -> Iterator[None]:
    """Portable numerics (the same weights on any x86-64 CPU) and deterministic kernels for the build; the
    caller's settings come back afterwards."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        # Not x86-64 with MKL (an Arm machine, say): that machine's own kernels, still one thread.
        with numerics(build_numerics()), fixed_threads(1):
            yield
    finally:
        torch.use_deterministic_algorithms(deterministic)


def gate_masks(batch: list[Example], width: int, n_layer: int, gated_layers: int) -> list[torch.Tensor]:
    """Additive attention masks [batch, 1, width, width] per layer: causal and padding and, for the positions after
    a known subject, none of it in the layers below `gated_layers` and only its last token from there up."""
    allowed = torch.ones(width, width, dtype=torch.bool).tril().expand(len(batch), width, width).clone()
    for row, example in enumerate(batch):
        allowed[row, :, len(example.ids) :] = False  # padding keys (every query keeps at least itself or key 0)
    lower, upper = allowed.clone(), allowed
    for row, example in enumerate(batch):
        if example.subject_span is not None:
            first, last = example.subject_span
            lower[row, last + 1 :, first : last + 1] = False
            upper[row, last + 1 :, first:last] = False
    lowest = torch.finfo(torch.float32).min
    masks = [torch.zeros(m.shape).masked_fill(~m, lowest)[:, None] for m in (lower, upper)]
    return [masks[0] if layer < gated_layers else masks[1] for layer in range(n_layer)]


@contextmanager
def subject_gate(model, gated_layers: int) -> Iterator[list[torch.Tensor]]:
    """While open, each block attends with the mask of its layer from the yielded list (filled per batch). Training
    only: the saved model is a plain GPT-2 that attends everywhere, and recalls as it was trained to (measured)."""
    masks: list[torch.Tensor] = []
    if not gated_layers:
        yield masks
        return

    def replace_mask(layer: int):
        def hook(module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
            if len(args) > 2:  # GPT2Block(hidden_states, cache, attention_mask, ...)
                return (*args[:2], masks[layer], *args[3:]), kwargs
            return args, {**kwargs, "attention_mask": masks[layer]}
        return hook

    model.set_attn_implementation("eager")  # takes an additive float mask as given
    handles = [block.register_forward_pre_hook(replace_mask(layer), with_kwargs=True)
               for layer, block in enumerate(model.transformer.h)]
    try:
        yield masks
    finally:
        for handle in handles:
            handle.remove()
        model.set_attn_implementation("sdpa")


def train(model, examples: list[Example], preset: WorldPreset, train_seed: int, pad_id: int,
          progress: Progress | None, gated_layers: int = 0) -> None:
    """AdamW with a one-cycle schedule; loss = weighted mean next-token cross-entropy; `gated_layers`: see
    `gate_masks`."""
    generator = torch.Generator().manual_seed(train_seed)
    steps_per_epoch = math.ceil(len(examples) / preset.batch_size)
    total = steps_per_epoch * preset.epochs
    optimizer = Adam(model.parameters(), lr=preset.peak_lr, weight_decay=0.01, betas=(0.9, 0.98))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=preset.peak_lr, total_steps=total,
                                                   pct_start=0.15)
    task = progress.add_task("training the fact world", total=total) if progress else None
    model.train()
    with subject_gate(model, gated_layers) as gate:
        for _ in range(preset.epochs):
            order = torch.randperm(len(examples), generator=generator).tolist()
            for start in range(0, len(order), preset.batch_size):
                batch = [examples[i] for i in order[start : start + preset.batch_size]]
                ids, mask, weights = collate(batch, pad_id)
                if gated_layers:
                    gate[:] = gate_masks(batch, ids.shape[1], model.config.n_layer, gated_layers)
                logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
                losses = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1),
                                                           reduction="none")
                target_weights = weights[:, 1:].reshape(-1)
                loss = (losses * target_weights).sum() / target_weights.sum()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                if progress is not None and task is not None:
                    progress.advance(task)
    model.eval()


def knowledge(model, tokenizer, records: list[dict[str, Any]]) -> tuple[float, float]:
    """Share of facts whose rewrite prompt's argmax next token is target_true's first token; same on paraphrases."""
    rewrite, paraphrase = [], []
    for record in records:
        fact = record["requested_rewrite"]
        truth = fact["target_true"]["str"]
        rewrite.append((fact["prompt"].format(fact["subject"]), truth))
        paraphrase.extend((p, truth) for p in record.get("paraphrase_prompts", []))
    known = [s.first_token_correct for s in score_targets(model, tokenizer, rewrite)]
    known_paraphrase = [s.first_token_correct for s in score_targets(model, tokenizer, paraphrase)]
    return sum(known) / max(len(known), 1), sum(known_paraphrase) / max(len(known_paraphrase), 1)


