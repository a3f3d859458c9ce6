"""Requests as tokens, and their keys: the subject's last token in each prompt, the checks a request must pass
before an edit, and the keys and hidden states every editing method reads there (NSE.md, Keys and z*).

Every forward here runs the model's base (no LM head) with forward hooks: a pre-hook on a rewrite module reads
its input (the key), a hook on a block reads its output. Sequences are right-padded, so a token's position is the
same as in its unpadded sequence.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from editor.activations import (
    read_at_tokens,
)
from editor.errors import HparamsError, RequestError
from editor.hparams import EditHparams
from editor.model import LoadedModel
from editor.phases import phase
from ledger.records import EditRequest

BARE_TEMPLATE = "{}"


# ------------------------------------------------------------------------------------------------ tokens
def subject_last_token_index(tokenizer, text_template: str, subject: str) -> int:
    """Index of the last token of `subject` in `text_template` with `{}` replaced by it (specials count)."""
    return encode_with_subject(tokenizer, text_template, subject)[1]


def tokens_inside(offsets: Sequence[tuple[int, int]], start: int, end: int) -> list[int]:
    """Indices of the tokens (by their character offsets) that overlap the characters [start, end)."""
    return [i for i, (s, e) in enumerate(offsets) if e > s and s < end and e > start]


def encode_with_subject(tokenizer, text_template: str, subject: str) -> tuple[list[int], int]:
    """Token ids of the filled template and the index of the subject's last token."""
    if "{}" not in text_template:
        raise RequestError(f"text {text_template!r}: no {{}} where the subject goes")
    before, after = text_template.split("{}", 1)
    text = before + subject + after
    start, end = len(before), len(before) + len(subject)
    if getattr(tokenizer, "is_fast", False):
        encoded = tokenizer(text, return_offsets_mapping=True)
        inside = tokens_inside(encoded["offset_mapping"], start, end)
        ids = list(encoded["input_ids"])
    else:  # slow tokenizer: the subject ends where the tokens of the text up to it end
        ids = list(tokenizer(text)["input_ids"])
        upto = list(tokenizer(text[:end])["input_ids"])
        inside = [len(upto) - 1] if subject.strip() and ids[: len(upto)] == upto else []
    if not inside:
        raise RequestError(f"subject {subject!r}: not found in the tokenized prompt {text!r}")
    return ids, inside[-1]


def target_token_ids(tokenizer, context: str, target: str) -> list[int]:
    """The target's tokens as they continue `context`.

    Tokenizers with space prefixes (GPT-2 BPE 'Ġ', SentencePiece '▁') code a word after a space differently
    from the word alone: taking the tokens that `context + " " + target` adds to `context` gives the spaced
    form for those and the plain word for word-level tokenizers, without naming any model.
    """
    plain = list(tokenizer(context, add_special_tokens=False)["input_ids"])
    joined = list(tokenizer(context + " " + target.lstrip(), add_special_tokens=False)["input_ids"])
    if joined[: len(plain)] == plain and len(joined) > len(plain):
        return joined[len(plain) :]
    return list(tokenizer(" " + target.lstrip(), add_special_tokens=False)["input_ids"])


def validate_requests(loaded: LoadedModel, requests: Sequence[EditRequest]) -> None:
    """Refuse, before any work, a request that cannot be edited; the error names its index and subject."""
    check_requests(loaded.tokenizer, requests)


def check_requests(tokenizer, requests: Sequence[EditRequest]) -> None:
    """What `validate_requests` checks, with the tokenizer alone (before a model is loaded)."""
    if not requests:
        raise RequestError("requests: the round has no requests")
    for index, request in enumerate(requests):
        where = f"request {index} (subject {request.subject!r})"
        if request.prompt.count("{}") != 1:
            raise RequestError(f"{where}: prompt {request.prompt!r} must contain exactly one {{}}")
        if not request.target_new.strip():
            raise RequestError(f"{where}: empty target_new")
        try:
            encode_with_subject(tokenizer, request.prompt, request.subject)
        except RequestError as error:
            raise RequestError(f"{where}: {error}") from None
        if not target_token_ids(tokenizer, request.text, request.target_new):
            raise RequestError(f"{where}: target_new {request.target_new!r} has no tokens")


def validate_known_tokens(tokenizer, requests: Sequence[EditRequest]) -> None:
    """Refuse a subject or target that the tokenizer codes (partly) as its unknown token: the model would be
    edited to produce, or to recall from, `<unk>` instead of the words asked for. Checked for new edits only:
    a replay recomputes what the ledger recorded, as it was recorded."""
    unknown = getattr(tokenizer, "unk_token_id", None)
    if unknown is None:
        return
    for index, request in enumerate(requests):
        where = f"request {index} (subject {request.subject!r})"
        if unknown in tokenizer(request.subject, add_special_tokens=False)["input_ids"]:
            raise RequestError(f"{where}: the subject tokenizes to the unknown token {tokenizer.unk_token!r}")
        if unknown in target_token_ids(tokenizer, request.text, request.target_new):
            raise RequestError(f"{where}: target_new {request.target_new!r} tokenizes to the unknown token "
                               f"{tokenizer.unk_token!r}")


def validate_layers(loaded: LoadedModel, hp: EditHparams) -> None:
    n_layers = loaded.arch.n_layers
    if not hp.layers:
        raise HparamsError("hparams.layers: empty")
    for layer in hp.layers:
        if not 0 <= layer < n_layers:
            raise HparamsError(
                f"hparams.layers: layer {layer} out of range (the model has {n_layers} blocks)"
            )
    if list(hp.layers) != sorted(set(hp.layers)):
        raise HparamsError(f"hparams.layers: {hp.layers} must be ascending without repeats")
    if hp.v_loss_layer not in (None, n_layers - 1):
        raise HparamsError(
            f"hparams.v_loss_layer: layer {hp.v_loss_layer}: only the last block ({n_layers - 1})"
        )


def fill_template(template: str, prompt: str) -> str:
    """A context template around a request prompt; the prompt's `{}` stays for the subject."""
    return template.replace("{}", prompt, 1)


def keys_per_template(
    loaded: LoadedModel, requests: Sequence[EditRequest], layers: Sequence[int], templates: Sequence[str]
) -> dict[int, torch.Tensor]:
    """Keys of every request in every context template at every layer, one pass: layer -> [n, T, d_ff]."""
    sequences, positions = [], []
    for request in requests:
        for template in templates:
            ids, position = encode_with_subject(
                loaded.tokenizer, fill_template(template, request.prompt), request.subject
            )
            sequences.append(ids)
            positions.append(position)
    keys, _ = read_at_tokens(loaded, sequences, positions, key_layers=layers)
    return {layer: flat.view(len(requests), len(templates), -1) for layer, flat in keys.items()}


@phase("keys")
def compute_keys_layers(
    loaded: LoadedModel, requests: Sequence[EditRequest], layers: Sequence[int], templates: Sequence[str]
) -> dict[int, torch.Tensor]:
    """Keys of every request at every layer in one pass: layer -> [d_ff, n] float32.

    k = ½ (k_bare + mean of the prefixed k): the bare prompt weighs as much as all context templates together.
    """
    bare = torch.tensor([t == BARE_TEMPLATE for t in templates])
    averaged = {}
    for layer, per_template in keys_per_template(loaded, requests, layers, templates).items():
        groups = [per_template[:, group].mean(dim=1) for group in (bare, ~bare) if group.any()]
        averaged[layer] = torch.stack(groups).mean(dim=0).T.contiguous()
    return averaged


def compute_keys(
    loaded: LoadedModel, requests: Sequence[EditRequest], layer: int, templates: Sequence[str]
) -> torch.Tensor:
    """Keys of `requests` at `layer`: [d_ff, n] float32 (NSE.md, Keys)."""
    return compute_keys_layers(loaded, requests, [layer], templates)[layer]


@phase("hidden states")
def hidden_states(loaded: LoadedModel, requests: Sequence[EditRequest], layer: int) -> torch.Tensor:
    """Block `layer`'s output at the subject's last token of each bare prompt: [n, d_model] float32."""
    encoded = [encode_with_subject(loaded.tokenizer, r.prompt, r.subject) for r in requests]
    _, blocks = read_at_tokens(
        loaded, [ids for ids, _ in encoded], [p for _, p in encoded], block_layers=[layer]
    )
    return blocks[layer]

