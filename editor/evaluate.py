"""Evaluation of edit requests on a (model, tokenizer): the CounterFact and zsRE protocols, fluency, perplexity.

Definitions (NSE.md "Evaluation"). A target is scored under teacher forcing after its prompt, tokenized as
`prompt` (with the tokenizer's special tokens) followed by `" " + target` (without them):
- CounterFact, by mean per-token NLL: efficacy = P(target_new) > P(target_true) on the rewrite prompt;
  generalization = the same on paraphrase prompts; specificity = P(expected) > P(target_new) on neighbourhood
  prompts, where expected is the prompt's own target or else target_true. Without a target_true (or when it equals
  target_new) there is nothing to compare: efficacy and generalization then fall back to the `_argmax` value.
- Beside each, `<metric>_argmax`: teacher-forced top-1 token accuracy, the share of the target's tokens that are
  the argmax next token (for a one-token target: whether its first token is the argmax). This is the zsRE
  protocol: efficacy on the question, generalization on the rephrase, specificity of loc_ans on the unrelated
  question. `portability`: the same accuracy of the expected answer on portability prompts.
- generation_efficacy / generation_generalization: whether the greedy continuation of the rewrite prompt (of each
  paraphrase prompt, averaged), as many tokens long as target_new, starts with target_new. Teacher forcing feeds
  the target's own tokens back in; this reads what the model then says (arXiv 2502.11177 found the two far apart).
- fluency: ROME's n-gram entropy of sampled generations, x100 (see `fluency_score`).
A per-request row holds only the metrics that apply to it; an aggregate is the mean over the rows that have it.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from editor.prefix_cache import decode_step
from ledger.records import EditRequest, Score

BATCH_SIZE = 64
METRICS = ("efficacy", "generalization", "specificity", "efficacy_argmax", "generalization_argmax",
           "specificity_argmax", "generation_efficacy", "generation_generalization", "portability", "fluency")
WORD = re.compile(r"\w+|[^\w\s]")


class EvaluationError(ValueError):
    """A prompt or target that cannot be scored."""


@dataclass(frozen=True)
class TargetScore:
    nll: float  # mean per-token negative log-likelihood of the target after the prompt
    token_accuracy: float  # share of the target's tokens that are the argmax next token (teacher forcing)
    first_token_correct: bool


@dataclass
class EvalReport:
    per_request: list[dict[str, Any]] = field(default_factory=list)
    aggregate: dict[str, float] = field(default_factory=dict)


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _pad_id(tokenizer) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0


def encode_pair(tokenizer, prompt: str, target: str) -> tuple[list[int], list[int]]:
    """Token ids of the prompt (with the tokenizer's special tokens) and of the target that follows it."""
    prompt_ids = list(tokenizer(prompt)["input_ids"])
    target_ids = list(tokenizer(target if target[:1].isspace() else " " + target,
                                add_special_tokens=False)["input_ids"])
    if not prompt_ids or not target_ids:
        raise EvaluationError(f"cannot score target {target!r} after prompt {prompt!r}: empty tokenization")
    return prompt_ids, target_ids


@torch.no_grad()
def score_targets(model, tokenizer, pairs: Sequence[tuple[str, str]],
                  batch_size: int = BATCH_SIZE) -> list[TargetScore]:
    """Teacher-forced score of each (prompt, target) pair, batched (right padding). The language-model head runs
    only at the positions that predict a target token (a few of each row's tokens, the head being a fifth of
    SmolLM2's forward)."""
    # batched by length: a batch pads to its longest row, and CounterFact's prompts run from 5 to 30 tokens
    by_pair = {pair: encode_pair(tokenizer, *pair) for pair in dict.fromkeys(pairs)}
    unique = sorted(by_pair, key=lambda pair: sum(map(len, by_pair[pair])))
    encoded = [by_pair[pair] for pair in unique]
    pad_id, device = _pad_id(tokenizer), _device(model)
    scores: dict[tuple[str, str], TargetScore] = {}
    for start in range(0, len(unique), batch_size):
        chunk = encoded[start : start + batch_size]
        ids, mask = _right_padded([p + t for p, t in chunk], pad_id)
        hidden = model.get_decoder()(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state
        rows = torch.cat([torch.full((len(t),), row) for row, (_, t) in enumerate(chunk)])
        positions = torch.cat([torch.arange(len(p) - 1, len(p) + len(t) - 1) for p, t in chunk])
        log_probs = torch.log_softmax(head_logits(model, hidden[rows, positions]).cpu(), dim=-1)
        offset = 0
        for row, (_, t) in enumerate(chunk):
            target = torch.tensor(t)
            picked = log_probs[offset : offset + len(t)]
            offset += len(t)
            nll = -picked[torch.arange(len(t)), target].mean().item()
            hits = picked.argmax(dim=-1) == target
            scores[unique[start + row]] = TargetScore(nll=nll, token_accuracy=hits.float().mean().item(),
                                                      first_token_correct=bool(hits[0]))
    return [scores[pair] for pair in pairs]


def head_logits(model, hidden: torch.Tensor) -> torch.Tensor:
    """float32 logits of the language-model head for hidden states [..., d_model] of the decoder's last layer,
    with the final soft-capping of the models that have one (Gemma-2's 30)."""
    logits = model.get_output_embeddings()(hidden).float()
    cap = getattr(model.config, "final_logit_softcapping", None)
    return torch.tanh(logits / cap) * cap if cap else logits


def _right_padded(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(list(row))
        mask[i, : len(row)] = 1
    return ids, mask


@torch.no_grad()
def next_token_logits(model, tokenizer, prompts: Sequence[str], batch_size: int = BATCH_SIZE) -> torch.Tensor:
    """[len(prompts), vocab] float32 logits of the token after each prompt, batched (right padding: each row read
    at its own last token, the language-model head applied to those rows only)."""
    pad_id = _pad_id(tokenizer)
    rows = [_last_token_logits(model, [list(tokenizer(prompt)["input_ids"]) for prompt in prompts[s : s + batch_size]],
                               pad_id).cpu() for s in range(0, len(prompts), batch_size)]
    return torch.cat(rows) if rows else torch.empty(0, 0)


def _last_token_logits(model, rows: Sequence[Sequence[int]], pad_id: int) -> torch.Tensor:
    """Logits at each row's own last token of a right-padded batch, the head applied at those positions only."""
    ids, mask = _right_padded(rows, pad_id)
    device = _device(model)
    hidden = model.get_decoder()(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state
    last = torch.tensor([len(row) - 1 for row in rows], device=hidden.device)
    return head_logits(model, hidden[torch.arange(len(rows)), last])


@torch.no_grad()
def greedy_continuations(model, tokenizer, prompts: Sequence[tuple[str, int]],
                         batch_size: int = BATCH_SIZE) -> list[str]:
    """The greedy continuation (decoded) of each (prompt, n_tokens), batched with right padding: each step reads
    the logits at every row's own last token (the head applied there only). No cache: the continuations are a few
    tokens long."""
    ids = {pair: list(tokenizer(pair[0])["input_ids"]) for pair in dict.fromkeys(prompts)}
    unique = sorted(ids, key=lambda pair: len(ids[pair]))  # batched by length: less padding
    pad_id = _pad_id(tokenizer)
    found: dict[tuple[str, int], str] = {}
    for start in range(0, len(unique), batch_size):
        chunk = unique[start : start + batch_size]
        rows = [list(ids[pair]) for pair in chunk]
        lengths = [len(row) for row in rows]
        for _ in range(max(n for _, n in chunk)):
            tokens = _last_token_logits(model, rows, pad_id).argmax(dim=-1).tolist()
            for row, token in zip(rows, tokens, strict=True):
                row.append(int(token))
        for (prompt, n), row, length in zip(chunk, rows, lengths, strict=True):
            found[(prompt, n)] = tokenizer.decode(row[length : length + n], skip_special_tokens=True)
    return [found[pair] for pair in prompts]


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def evaluate_requests(model, tokenizer, requests: Sequence[EditRequest], *, fluency: bool = False,
                      generation: bool = True, seed: int = 0) -> EvalReport:
    """Score every request (see the module docstring for the metrics); no side effects on the model. Without
    `generation`, the greedy continuations (most of the time on a real model) and their metrics are left out."""
    pairs = _target_pairs(requests, lambda request: [request.text] + [p.text for p in request.prompts("paraphrase")])
    for request in requests:
        for prompt in request.prompts("neighborhood"):
            expected = prompt.target or request.target_true
            if expected:
                pairs.extend([(prompt.text, expected), (prompt.text, request.target_new)])
        pairs.extend((p.text, p.target) for p in request.prompts("portability") if p.target)
    scored = dict(zip(pairs, score_targets(model, tokenizer, pairs), strict=True))
    generated = _generations(model, tokenizer, requests, scored) if generation else {}

    rows = []
    for request in requests:
        new, true = request.target_new, request.target_true
        row: dict[str, Any] = {"request_key": request.request_key, "case_id": request.case_id,
                               "subject": request.subject, "target_new": new, "target_true": true}
        for metric, texts in (("efficacy", [request.text]),
                              ("generalization", [p.text for p in request.prompts("paraphrase")])):
            if not texts:
                continue
            row[f"{metric}_argmax"] = _mean([scored[(t, new)].token_accuracy for t in texts])
            row[metric] = _says_new(scored, texts, request)
        for metric, texts in (("generation_efficacy", [request.text]),
                              ("generation_generalization", [p.text for p in request.prompts("paraphrase")])):
            if texts and generated:
                row[metric] = _mean([float(generated[(t, new)]) for t in texts])
        neighbours = [(p.text, p.target or true) for p in request.prompts("neighborhood") if p.target or true]
        if neighbours:
            row["specificity_argmax"] = _mean([scored[(t, e)].token_accuracy for t, e in neighbours])
            compared = [float(scored[(t, e)].nll < scored[(t, new)].nll) for t, e in neighbours if e != new]
            if compared:
                row["specificity"] = _mean(compared)
        portable = [(p.text, p.target) for p in request.prompts("portability") if p.target]
        if portable:
            row["portability"] = _mean([scored[pair].token_accuracy for pair in portable])
        generation = [p.text for p in request.prompts("generation")]
        if fluency and generation:
            row["fluency"] = fluency_score(model, tokenizer, generation, seed=seed)
        rows.append(row)
    aggregate: dict[str, float] = {"n_requests": float(len(rows))}
    for metric in METRICS:
        value = _mean([row[metric] for row in rows if metric in row])
        if value is not None:
            aggregate[metric] = value
    return EvalReport(per_request=rows, aggregate=aggregate)


def _target_pairs(requests: Sequence[EditRequest], texts_of) -> list[tuple[str, str]]:
    """(text, target) for target_new and target_true (when there is one) after each of a request's texts."""
    return [(text, target) for request in requests for text in texts_of(request)
            for target in [request.target_new] + ([request.target_true] if request.target_true else [])]


def _says_new(scored: dict[tuple[str, str], TargetScore], texts: Sequence[str], request: EditRequest) -> float:
    """CounterFact's comparison over `texts` (at least one): the share where target_new is likelier than
    target_true; without a distinct target_true, the share where every target_new token is the argmax."""
    new, true = request.target_new, request.target_true
    if true and true != new:
        return sum(float(scored[(t, new)].nll < scored[(t, true)].nll) for t in texts) / len(texts)
    return sum(float(scored[(t, new)].token_accuracy == 1.0) for t in texts) / len(texts)


def efficacies(model, tokenizer, requests: Sequence[EditRequest]) -> list[float]:
    """Each request's efficacy (its rewrite prompt only: what `evaluate_requests` reports as efficacy, at a
    thirteenth of its cost on CounterFact, no paraphrase, neighbourhood or generation)."""
    pairs = _target_pairs(requests, lambda request: [request.text])
    scored = dict(zip(pairs, score_targets(model, tokenizer, pairs), strict=True))
    return [_says_new(scored, [request.text], request) for request in requests]


def efficacy(model, tokenizer, requests: Sequence[EditRequest]) -> float:
    """Mean efficacy of `requests` (`efficacies`; none: 0)."""
    return _mean(efficacies(model, tokenizer, requests)) or 0.0


def _generations(model, tokenizer, requests: Sequence[EditRequest],
                 scored: dict[tuple[str, str], TargetScore]) -> dict[tuple[str, str], bool]:
    """For the rewrite and paraphrase prompts: whether the greedy continuation starts with target_new. Where every
    target token was the teacher-forced argmax, greedy decoding says exactly the target's tokens (each step sees the
    same prefix), so only the other pairs are decoded: after an edit that holds, most of them are not."""
    wanted = sorted({(text, request.target_new) for request in requests
                     for text in [request.text] + [p.text for p in request.prompts("paraphrase")]})
    target_ids = {pair: encode_pair(tokenizer, *pair)[1] for pair in wanted}
    forced = [pair for pair in wanted if scored[pair].token_accuracy == 1.0]
    decoded = [pair for pair in wanted if scored[pair].token_accuracy < 1.0]
    said = [tokenizer.decode(target_ids[pair], skip_special_tokens=True) for pair in forced]
    said += greedy_continuations(model, tokenizer, [(text, len(target_ids[(text, new)])) for text, new in decoded])
    return {pair: text.strip().startswith(pair[1].strip()) for pair, text in zip(forced + decoded, said, strict=True)}


@torch.no_grad()
def perplexity(model, tokenizer, texts: Sequence[str], batch_size: int = BATCH_SIZE) -> float:
    """exp(mean NLL over every predicted token of `texts`), each text scored on its own (no packing)."""
    pad_id, device = _pad_id(tokenizer), _device(model)
    encoded = [ids for ids in (list(tokenizer(text)["input_ids"]) for text in texts if text.strip()) if len(ids) > 1]
    if not encoded:
        raise EvaluationError("perplexity: no text of two or more tokens")
    total_nll, total_tokens = 0.0, 0
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start : start + batch_size]
        ids, mask = _right_padded(chunk, pad_id)
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float().cpu()
        losses = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")
        total_nll += (losses * mask[:, 1:]).sum().item()
        total_tokens += int(mask[:, 1:].sum())
    return math.exp(total_nll / total_tokens)


def perplexity_change(model, base_model, tokenizer, texts: Sequence[str]) -> float:
    """Relative change of held-out perplexity against the base model: ppl(model) / ppl(base) - 1."""
    return perplexity(model, tokenizer, texts) / perplexity(base_model, tokenizer, texts) - 1.0


def ngram_entropy(tokens_or_text: str | Sequence[str], n: int) -> float:
    """Shannon entropy (bits) of the frequency distribution of the n-grams of a token sequence.

    A string is split into words and punctuation marks (as nltk.word_tokenize would, for plain text)."""
    tokens = WORD.findall(tokens_or_text) if isinstance(tokens_or_text, str) else list(tokens_or_text)
    counts = Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    total = sum(counts.values())
    return -sum(c / total * math.log2(c / total) for c in counts.values()) if total else 0.0


def text_fluency(text: str) -> float:
    """ROME's compute_n_gram_entropy: mean of (2/3 * bigram entropy, 4/3 * trigram entropy), in bits."""
    return (2 / 3 * ngram_entropy(text, 2) + 4 / 3 * ngram_entropy(text, 3)) / 2


@torch.no_grad()
def generate(model, tokenizer, prompt: str, *, generator: torch.Generator, max_new_tokens: int,
             top_k: int = 5) -> str:
    """Top-k sampling (ROME's generate_fast uses k=5) with a seeded generator; returns prompt + continuation."""
    device = _device(model)
    ids = torch.tensor([list(tokenizer(prompt)["input_ids"])], device=device)
    limit = getattr(model.config, "n_positions", None) or getattr(model.config, "max_position_embeddings", None)
    produced: list[int] = []
    past, step_input = None, ids
    for _ in range(max_new_tokens):
        if limit is not None and ids.shape[1] + len(produced) >= limit:
            break
        logits, past = decode_step(model, step_input, past)
        top = torch.topk(logits[0].float().cpu(), k=min(top_k, logits.shape[-1]))
        choice = top.indices[torch.multinomial(torch.softmax(top.values, dim=-1), 1, generator=generator)].item()
        if choice == tokenizer.eos_token_id:
            break
        produced.append(int(choice))
        step_input = torch.tensor([[choice]], device=device)
    return prompt + " " + tokenizer.decode(produced, skip_special_tokens=True) if produced else prompt


def fluency_score(model, tokenizer, prompts: Sequence[str], *, seed: int, max_new_tokens: int = 50) -> float:
    """Fluency as in ROME/MEMIT/NSE tables: 100 x the mean over prompts of `text_fluency(prompt + generation)`,
    i.e. 100 * mean_i [(2/3 * H2_i + 4/3 * H3_i) / 2], Hn the n-gram entropy in bits of generation i
    (sampled top-5, seeded: the same seed gives the same generations)."""
    if not prompts:
        raise EvaluationError("fluency: no prompts")
    generator = torch.Generator().manual_seed(seed)
    texts = [generate(model, tokenizer, p, generator=generator, max_new_tokens=max_new_tokens) for p in prompts]
    return 100.0 * sum(text_fluency(t) for t in texts) / len(texts)


def retention(model, tokenizer, rounds: Sequence[Sequence[EditRequest]]) -> list[float]:
    """Efficacy of each round's requests on this (final) model: how well earlier edits survived later ones."""
    return [efficacy(model, tokenizer, r) if r else 0.0 for r in rounds]


def report_scores(report: EvalReport, suite: str) -> list[Score]:
    """Ledger rows: each request's metrics (request_key and suite set) and the suite's aggregates (suite only)."""
    scores = [Score(metric=metric, value=float(row[metric]), request_key=row["request_key"], suite=suite)
              for row in report.per_request for metric in METRICS if metric in row]
    scores += [Score(metric=metric, value=float(value), suite=suite)
               for metric, value in report.aggregate.items() if metric in METRICS]
    return scores
