"""Which blocks to edit, measured on the model itself (causal tracing, as ROME located facts) instead of depth rules.

For each fact the model knows: run its prompt clean, then with noise (`noise_scale` × the embeddings' standard
deviation, from a seeded CPU generator) added to the subject's token embeddings, then corrupted again but with
block l's output at the subject's last token put back to its clean value, for every block l in one batch. The
probability of the true answer's first token with block l restored, minus the corrupted one, is how much of
the fact that one state carries. Early blocks carry all of it (the subject is all there is); where the effect
falls, attention has read the fact out of the subject into later tokens: an edit must be written before that.

The edit window: `width` blocks ending at the last block whose mean effect is still at least `keep` of the
largest one (z_layer, where z* lives); the curve and the rule are recorded with the base.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from editor.activations import block_hidden, hooked, with_block_hidden
from editor.errors import RequestError
from editor.evaluate import BATCH_SIZE, next_token_logits
from editor.keys import encode_with_subject, target_token_ids, tokens_inside
from editor.model import LoadedModel
from ledger.records import EditRequest

NOISE_SCALE = 3.0  # ROME's: three standard deviations of the embeddings
KEEP_FRACTION = 0.9
WINDOW_WIDTH = 3
TRACE_PROMPTS = 100
KNOWN_TOP_K = 5


@dataclass
class TraceResult:
    n_prompts: int
    clean: float  # mean P(true answer) on the clean prompts
    corrupted: float  # with the subject's embeddings noised
    effect: list[float]  # per block: mean P(true | block restored) - P(true | corrupted)
    noise_scale: float
    seed: int

    def window(self, width: int = WINDOW_WIDTH, keep: float = KEEP_FRACTION) -> list[int]:
        """`width` blocks ending at the last one whose effect is at least `keep` of the largest."""
        top = max(self.effect)
        last = max(layer for layer, value in enumerate(self.effect) if value >= keep * top)
        last = max(last, width - 1)
        return list(range(last - width + 1, last + 1))

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def known_requests(loaded: LoadedModel, requests: Sequence[EditRequest], limit: int) -> list[EditRequest]:
    """The first `limit` requests whose fact the model holds: the true answer's first token is among its top
    `KNOWN_TOP_K` next tokens and more probable than the new answer's (a small model rarely ranks a CounterFact
    answer first: SmolLM2-135M does for 32 of the first 600 records). Read in batches of BATCH_SIZE prompts (one
    forward per prompt took minutes for the demo's 100 facts)."""
    candidates = [request for request in requests if request.target_true]
    chosen: list[EditRequest] = []
    for start in range(0, len(candidates), BATCH_SIZE):
        batch = candidates[start : start + BATCH_SIZE]
        logits = next_token_logits(loaded.model, loaded.tokenizer, [r.text for r in batch])
        for request, row in zip(batch, logits, strict=True):
            true = target_token_ids(loaded.tokenizer, request.text, request.target_true)[0]
            new = target_token_ids(loaded.tokenizer, request.text, request.target_new)[0]
            if true in torch.topk(row, KNOWN_TOP_K).indices.tolist() and row[true] > row[new]:
                chosen.append(request)
                if len(chosen) >= limit:
                    return chosen
    return chosen


def _subject_span(tokenizer, request: EditRequest) -> tuple[list[int], list[int]]:
    """The prompt's token ids and the indices of the subject's tokens."""
    ids, last = encode_with_subject(tokenizer, request.prompt, request.subject)
    before = request.prompt.split("{}", 1)[0]
    encoded = tokenizer(request.text, return_offsets_mapping=True)
    inside = tokens_inside(encoded["offset_mapping"], len(before), len(before) + len(request.subject))
    return ids, inside or [last]


@dataclass
class PromptTrace:
    """One prompt's trace: P(true answer) clean, corrupted, and each block's restoring effect on it."""

    request_key: str
    clean: float
    corrupted: float
    effect: list[float]

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def trace_prompts(loaded: LoadedModel, requests: Sequence[EditRequest], seed: int = 0,
                  noise_scale: float = NOISE_SCALE, skip: int = 0) -> Iterator[PromptTrace]:
    """Each request's trace, in order (see the module doc). The noise comes from one generator seeded once, so a
    prompt's noise depends on the prompts before it: the first `skip` are not run, but their draws are made, so
    the rest are traced as in a run over all of `requests` (a long trace resumes where it stopped)."""
    model, arch, device = loaded.model, loaded.arch, loaded.device
    embed = model.get_input_embeddings()
    generator = torch.Generator().manual_seed(seed)
    n_layers = arch.n_layers
    rows = n_layers + 2  # clean, corrupted, then one per restored block
    for index, request in enumerate(requests):
        ids, subject = _subject_span(loaded.tokenizer, request)
        if index < skip:
            torch.randn(len(subject), embed.weight.shape[-1], generator=generator)  # the draw the trace made
            continue
        last = subject[-1]
        answer = target_token_ids(loaded.tokenizer, request.text, request.target_true)[0]
        batch = torch.tensor([ids] * rows, device=device)
        noise: list[torch.Tensor] = []

        def corrupt(module: nn.Module, args: tuple, output: torch.Tensor, subject=subject, noise=noise):
            if not noise:
                scale = noise_scale * float(output[0].float().std())
                drawn = torch.randn(len(subject), output.shape[-1], generator=generator) * scale
                noise.append(drawn.to(device=output.device, dtype=output.dtype))
            output = output.clone()
            output[1:, subject] += noise[0]
            return output

        def restore(layer: int, last=last):
            def hook(module: nn.Module, args: tuple, output):
                hidden = block_hidden(output).clone()
                hidden[2 + layer, last] = hidden[0, last]
                return with_block_hidden(output, hidden)

            return hook

        handles = [embed.register_forward_hook(corrupt)]
        handles += [arch.block_module(model, layer).register_forward_hook(restore(layer)) for layer in range(n_layers)]
        with hooked(handles):
            logits = model(input_ids=batch, use_cache=False, logits_to_keep=1).logits[:, -1].float()
        probability = torch.softmax(logits, dim=-1)[:, answer].double().cpu()
        yield PromptTrace(request.request_key, float(probability[0]), float(probability[1]),
                          (probability[2:] - probability[1]).tolist())


def combine(prompts: Sequence[PromptTrace], seed: int = 0, noise_scale: float = NOISE_SCALE) -> TraceResult:
    """The mean trace of `prompts` (summed in their order, in float64: the same numbers as one `trace` of them)."""
    n_layers = len(prompts[0].effect) if prompts else 0
    effect = torch.zeros(n_layers, dtype=torch.float64)
    clean_sum = corrupted_sum = 0.0
    for prompt in prompts:
        clean_sum += prompt.clean
        corrupted_sum += prompt.corrupted
        effect += torch.tensor(prompt.effect, dtype=torch.float64)
    n = max(1, len(prompts))
    return TraceResult(len(prompts), clean_sum / n, corrupted_sum / n, (effect / n).tolist(), noise_scale, seed)


def trace(loaded: LoadedModel, requests: Sequence[EditRequest], seed: int = 0,
          noise_scale: float = NOISE_SCALE) -> TraceResult:
    """The restoring effect of every block's subject-last-token state over `requests` (see the module doc)."""
    prompts = list(trace_prompts(loaded, requests, seed, noise_scale))
    result = combine(prompts, seed, noise_scale)
    if not prompts:  # as before: no prompt, no blocks' effects known, but the model's depth is
        result.effect = [0.0] * loaded.arch.n_layers
    return result


def trace_model(loaded: LoadedModel, requests: Sequence[EditRequest], limit: int = TRACE_PROMPTS,
                width: int = WINDOW_WIDTH, keep: float = KEEP_FRACTION) -> dict:
    """The trace over up to `limit` of `requests` the model knows, the window it gives, and the rule, as recorded
    with a base model."""
    known = known_requests(loaded, requests, limit)
    if not known:
        raise RequestError(f"trace: none of the {len(requests)} facts given is one the model knows")
    result = trace(loaded, known)
    return {"layers": result.window(width, keep), "width": width, "keep": keep,
            "case_ids": [r.case_id for r in known], **result.to_dict()}
