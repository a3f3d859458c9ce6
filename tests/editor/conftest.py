"""Tiny randomly initialised models of the supported families, saved and loaded back like real ones."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from editor.model import LoadedModel, load_model
from editor.stats import second_moments
from ledger.records import EditRequest

FAMILIES = ("gpt2", "gptj", "gpt-neox", "llama", "gemma3")
WORDS = [
    "the",
    "a",
    "of",
    "in",
    "is",
    "was",
    "lives",
    "works",
    "city",
    "river",
    "born",
    "speaks",
    "language",
    "capital",
    "home",
    "near",
    "old",
    "new",
    "and",
    "Paris",
    "Berlin",
    "Tokyo",
    "Lima",
    "Oslo",
    "Cairo",
    "Rome",
    "Madrid",
    "French",
    "German",
    "Dutch",
    "Greek",
    "doctor",
    "pilot",
    "farmer",
    "Alice",
    "Bob",
    "Carol",
    "Dan",
    "Eve",
    "Frank",
    "Grace",
    "Heidi",
    "Ivan",
    "Judy",
    "Smith",
    "Jones",
    "Brown",
    "Kim",
    "Lee",
    "Park",
    "Moss",
    "Reed",
    "Therefore",
    "Because",
    "I",
    "You",
    "think",
    "so",
    "day",
    ".",
    ",",
]
SUBJECTS = (
    "Alice Smith",
    "Bob Jones",
    "Carol Brown",
    "Dan Kim",
    "Eve Lee",
    "Frank Park",
    "Grace Moss",
    "Heidi Reed",
    "Ivan Smith",
    "Judy Jones",
)
PROMPTS = ("{} lives in the city of", "{} was born in", "The home of {} is", "{} speaks")
TARGETS = ("Paris", "Berlin", "Tokyo", "Lima", "Oslo", "Cairo", "Rome", "Madrid", "French", "German")
TEMPLATES = ["{}", "The old city . {}", "I think so , and the river . {}"]


def make_requests(count: int, offset: int = 0) -> list[EditRequest]:
    return [
        EditRequest(
            subject=SUBJECTS[(i + offset) % len(SUBJECTS)],
            prompt=PROMPTS[(i + offset) % len(PROMPTS)],
            target_new=TARGETS[(3 * i + offset) % len(TARGETS)],
            case_id=str(i + offset),
        )
        for i in range(count)
    ]


def corpus_texts(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))) for _ in range(count)]


def build_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<|endoftext|>": 0, "<pad>": 1, "<unk>": 2}
    for word in WORDS:
        vocab.setdefault(word, len(vocab))
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="<unk>",
        pad_token="<pad>",
        eos_token="<|endoftext|>",
        bos_token="<|endoftext|>",
    )


def build_model(family: str, vocab_size: int):
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        GPTJConfig,
        GPTJForCausalLM,
        GPTNeoXConfig,
        GPTNeoXForCausalLM,
        LlamaConfig,
        LlamaForCausalLM,
    )
    from transformers.models.gemma3 import Gemma3ForCausalLM, Gemma3TextConfig

    special = dict(vocab_size=vocab_size, bos_token_id=0, eos_token_id=0, pad_token_id=1)
    if family == "gpt2":
        return GPT2LMHeadModel(
            GPT2Config(n_layer=4, n_embd=32, n_head=4, n_inner=128, n_positions=64, **special)
        )
    if family == "gptj":
        return GPTJForCausalLM(
            GPTJConfig(n_layer=4, n_embd=32, n_head=4, rotary_dim=4, n_inner=128, n_positions=64, **special)
        )
    if family == "gpt-neox":
        return GPTNeoXForCausalLM(
            GPTNeoXConfig(
                num_hidden_layers=4,
                hidden_size=32,
                num_attention_heads=4,
                intermediate_size=128,
                max_position_embeddings=64,
                **special,
            )
        )
    # Llama's module paths, plus a norm between the MLP's output and the residual; a sliding window longer than any
    # test prompt (z* refuses prompts longer than the window)
    if family == "gemma3":
        return Gemma3ForCausalLM(
            Gemma3TextConfig(num_hidden_layers=4, hidden_size=32, num_attention_heads=4, num_key_value_heads=2,
                             head_dim=8, intermediate_size=96, max_position_embeddings=64, sliding_window=64,
                             query_pre_attn_scalar=8, **special)
        )
    return LlamaForCausalLM(
        LlamaConfig(
            num_hidden_layers=4,
            hidden_size=32,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=96,
            max_position_embeddings=64,
            **special,
        )
    )


@dataclass
class TinyModel:
    family: str
    path: Path
    c0: dict[int, torch.Tensor]  # every layer, from a small random corpus

    def load(self) -> LoadedModel:
        return load_model(self.path, device="cpu")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, TinyModel]:
    root = tmp_path_factory.mktemp("tiny-models")
    tokenizer = build_tokenizer()
    built = {}
    for index, family in enumerate(FAMILIES):
        torch.manual_seed(100 + index)
        model = build_model(family, len(tokenizer))
        path = root / family
        model.save_pretrained(path, safe_serialization=True)
        tokenizer.save_pretrained(path)
        loaded = load_model(path, device="cpu")
        c0 = second_moments(loaded, range(4), corpus_texts(200), 200, progress=False)
        built[family] = TinyModel(family, path, c0)
    return built
