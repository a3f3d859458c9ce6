"""Each metric on a hand-made model whose next-token logits are set by hand (the same after every prefix)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from editor.evaluate import (
    efficacy,
    encode_pair,
    evaluate_requests,
    fluency_score,
    greedy_continuations,
    ngram_entropy,
    perplexity,
    perplexity_change,
    report_scores,
    retention,
    score_targets,
    text_fluency,
)
from editor.world_training import build_tokenizer
from ledger.records import EditRequest, EvalPrompt

WORDS = "Ada lives in the city of Paris Rome Oslo home is Bob a"


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer([WORDS])


def fixed_logits_model(tokenizer, logits: dict[str, float]) -> GPT2LMHeadModel:
    """A GPT-2 whose output ignores its input: ln_f has weight 0 and bias e_0, lm_head column 0 holds the logits."""
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=32, n_embd=8, n_layer=1, n_head=2,
                        tie_word_embeddings=False, eos_token_id=tokenizer.eos_token_id)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.zero_()
        model.transformer.ln_f.bias[0] = 1.0
        model.lm_head.weight.zero_()
        for word, value in logits.items():
            model.lm_head.weight[tokenizer.convert_tokens_to_ids(word), 0] = value
    return model


def log_prob(tokenizer, logits: dict[str, float], word: str) -> float:
    values = torch.zeros(len(tokenizer))
    for w, v in logits.items():
        values[tokenizer.convert_tokens_to_ids(w)] = v
    return torch.log_softmax(values, 0)[tokenizer.convert_tokens_to_ids(word)].item()


REQUEST = EditRequest(subject="Ada", prompt="{} lives in the city of", target_new="Paris", target_true="Rome",
                      eval_prompts=(EvalPrompt("paraphrase", "the home city of Ada is"),
                                    EvalPrompt("neighborhood", "Bob lives in the city of", "Rome"),
                                    EvalPrompt("neighborhood", "the home city of Bob is", "Oslo")))


def test_target_scores_are_teacher_forced_nll_and_token_accuracy(tokenizer):
    logits = {"Paris": 3.0, "Rome": 1.0}
    model = fixed_logits_model(tokenizer, logits)
    one, two = score_targets(model, tokenizer, [("Ada lives in", "Rome"), ("Ada lives in", "Paris Rome")])
    assert one.nll == pytest.approx(-log_prob(tokenizer, logits, "Rome"), abs=1e-5)
    assert (one.token_accuracy, one.first_token_correct) == (0.0, False)
    expected = -(log_prob(tokenizer, logits, "Paris") + log_prob(tokenizer, logits, "Rome")) / 2
    assert two.nll == pytest.approx(expected, abs=1e-5)
    assert (two.token_accuracy, two.first_token_correct) == (0.5, True)


def test_counterfact_metrics_follow_which_target_is_more_likely(tokenizer):
    edited = evaluate_requests(fixed_logits_model(tokenizer, {"Paris": 3.0, "Rome": 1.0, "Oslo": 2.0}), tokenizer,
                               [REQUEST])
    row = edited.per_request[0]
    assert (row["efficacy"], row["generalization"], row["efficacy_argmax"]) == (1.0, 1.0, 1.0)
    assert row["specificity"] == 0.0  # Paris beats both neighbours' own answers
    assert row["specificity_argmax"] == 0.0
    base = evaluate_requests(fixed_logits_model(tokenizer, {"Paris": 1.0, "Rome": 3.0, "Oslo": 2.0}), tokenizer,
                             [REQUEST])
    row = base.per_request[0]
    assert (row["efficacy"], row["generalization"], row["efficacy_argmax"]) == (0.0, 0.0, 0.0)
    assert row["specificity"] == 1.0  # Rome and Oslo both beat Paris
    assert row["specificity_argmax"] == 0.5  # only Rome is the argmax
    assert base.aggregate["efficacy"] == 0.0 and base.aggregate["n_requests"] == 1.0


def test_zsre_style_accuracy_and_a_request_without_target_true(tokenizer):
    request = EditRequest(subject="Ada", prompt="{} lives in", target_new="Paris Rome",
                          eval_prompts=(EvalPrompt("neighborhood", "Bob is", "Oslo"),
                                        EvalPrompt("portability", "home is", "Paris")))
    row = evaluate_requests(fixed_logits_model(tokenizer, {"Paris": 3.0}), tokenizer, [request]).per_request[0]
    assert row["efficacy_argmax"] == 0.5  # one of the two answer tokens is the argmax
    assert row["efficacy"] == 0.0  # no target_true: efficacy is "every token is the argmax"
    assert row["specificity_argmax"] == 0.0 and row["portability"] == 1.0
    assert "generalization" not in row  # no paraphrase prompts: the metric does not apply


def test_generation_efficacy_reads_what_the_model_says_not_what_it_prefers(tokenizer):
    # Paris beats Rome (teacher-forced efficacy 1), but the model says Oslo: no generation efficacy.
    said_oslo = evaluate_requests(fixed_logits_model(tokenizer, {"Oslo": 4.0, "Paris": 3.0, "Rome": 1.0}), tokenizer,
                                  [REQUEST]).per_request[0]
    assert (said_oslo["efficacy"], said_oslo["generalization"]) == (1.0, 1.0)
    assert (said_oslo["generation_efficacy"], said_oslo["generation_generalization"]) == (0.0, 0.0)
    said_paris = evaluate_requests(fixed_logits_model(tokenizer, {"Paris": 3.0, "Rome": 1.0}), tokenizer,
                                   [REQUEST]).per_request[0]
    assert (said_paris["generation_efficacy"], said_paris["generation_generalization"]) == (1.0, 1.0)
    # A two-token target: teacher forcing gives half credit for "Paris", greedy decoding says "Paris Paris".
    two = EditRequest(subject="Ada", prompt="{} lives in", target_new="Paris Rome")
    row = evaluate_requests(fixed_logits_model(tokenizer, {"Paris": 3.0}), tokenizer, [two]).per_request[0]
    assert row["efficacy_argmax"] == 0.5 and row["generation_efficacy"] == 0.0
    stored = report_scores(evaluate_requests(fixed_logits_model(tokenizer, {"Paris": 3.0}), tokenizer, [REQUEST]),
                           "suite")  # stored like the other scores: per request and as the suite's mean
    assert {(s.metric, s.request_key is None) for s in stored} >= {("generation_efficacy", False),
                                                                  ("generation_efficacy", True)}


def test_batched_greedy_continuations_are_what_generate_says(tiny_world):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_world.model_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_world.model_dir)
    requests = tiny_world.requests()[:6]
    prompts = [(r.text, 1 + i % 3) for i, r in enumerate(requests)] + [("Nobody knew why", 4)]  # lengths differ
    batched = greedy_continuations(model, tok, prompts, batch_size=3)
    for (prompt, n), said in zip(prompts, batched, strict=True):
        ids = torch.tensor([tok(prompt)["input_ids"]])
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                             do_sample=False, pad_token_id=tok.pad_token_id)
        assert said == tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    # The unedited model says the true object after its rewrite prompts.
    assert all(said.strip().startswith(r.target_true) for said, r in zip(batched, requests, strict=False))


def test_generation_metrics_decode_only_where_teacher_forcing_does_not_already_say_the_target(tiny_world):
    """The oracle: every rewrite and paraphrase prompt decoded greedily. Requests asking for the answer the model
    already gives take the teacher-forced path, counterfactual ones the decoding path; both must agree with it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_world.model_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_world.model_dir)
    counterfactual = tiny_world.requests()[:4]
    already_true = [replace(r, target_new=r.target_true) for r in tiny_world.requests()[4:8]]
    requests = counterfactual + already_true
    report = evaluate_requests(model, tok, requests)
    rows = report.per_request
    # efficacy alone (the rewrite prompts only) is the full evaluation's efficacy
    assert efficacy(model, tok, requests) == pytest.approx(report.aggregate["efficacy"])
    assert efficacy(model, tok, counterfactual) == 0.0 and efficacy(model, tok, already_true) == 1.0
    forced = 0
    for request, row in zip(requests, rows, strict=True):
        paraphrases = [p.text for p in request.prompts("paraphrase")]
        texts = [request.text, *paraphrases]
        scores = score_targets(model, tok, [(t, request.target_new) for t in texts])
        forced += sum(score.token_accuracy == 1.0 for score in scores)
        n = len(encode_pair(tok, request.text, request.target_new)[1])
        said = greedy_continuations(model, tok, [(t, n) for t in texts])
        says_new = [float(text.strip().startswith(request.target_new.strip())) for text in said]
        assert row["generation_efficacy"] == says_new[0]
        assert row["generation_generalization"] == pytest.approx(sum(says_new[1:]) / len(paraphrases))
    assert 0 < forced < sum(1 + len(r.prompts("paraphrase")) for r in requests)  # both paths were taken


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size(tokenizer):
    uniform = fixed_logits_model(tokenizer, {})
    texts = ["Ada lives in the city of Paris", "Bob is a"]
    assert perplexity(uniform, tokenizer, texts) == pytest.approx(len(tokenizer), rel=1e-5)
    peaked = fixed_logits_model(tokenizer, {"Paris": 5.0})
    # Every predicted token but "Paris" is less likely than uniform: perplexity goes up against the base.
    assert perplexity_change(peaked, uniform, tokenizer, texts) > 0.0
    assert perplexity_change(uniform, uniform, tokenizer, texts) == pytest.approx(0.0, abs=1e-9)


def test_ngram_entropy_of_known_sequences():
    bigram_entropy = -(2 / 3) * math.log2(2 / 3) - (1 / 3) * math.log2(1 / 3)  # (a,b) twice, (b,a) once
    assert ngram_entropy(["a", "b", "a", "b"], 2) == pytest.approx(bigram_entropy)
    assert ngram_entropy("a b a b", 3) == pytest.approx(1.0)
    assert ngram_entropy("a a a a", 2) == 0.0
    assert ngram_entropy("a", 2) == 0.0


def test_fluency_of_a_model_that_repeats_one_word(tokenizer):
    model = fixed_logits_model(tokenizer, {"a": 100.0})  # "a" has probability ~1 among the top 5
    score = fluency_score(model, tokenizer, ["Bob is"], seed=0, max_new_tokens=4)
    # "Bob is a a a a": bigrams (Bob,is) (is,a) (a,a)x3 ; trigrams (Bob,is,a) (is,a,a) (a,a,a)x2
    h2 = -2 * 0.2 * math.log2(0.2) - 0.6 * math.log2(0.6)
    h3 = -2 * 0.25 * math.log2(0.25) - 0.5 * math.log2(0.5)
    assert score == pytest.approx(100 * (2 / 3 * h2 + 4 / 3 * h3) / 2)
    assert text_fluency("Bob is a a a a") == pytest.approx(score / 100)


def test_fluency_sampling_is_seeded(tokenizer):
    model = fixed_logits_model(tokenizer, {w: 1.0 for w in ("Paris", "Rome", "Oslo", "Ada", "Bob")})
    prompts = ["Ada lives in", "Bob is"]
    def score(seed: int) -> float:
        return fluency_score(model, tokenizer, prompts, seed=seed, max_new_tokens=12)

    assert score(3) == score(3)
    scores = {score(s) for s in range(3)}
    assert len(scores) > 1  # five equally likely words: different seeds sample different texts


def test_retention_is_each_rounds_efficacy(tokenizer):
    model = fixed_logits_model(tokenizer, {"Paris": 3.0, "Rome": 1.0, "Oslo": 2.0})
    kept = EditRequest(subject="Ada", prompt="{} lives in", target_new="Paris", target_true="Rome")
    lost = EditRequest(subject="Bob", prompt="{} lives in", target_new="Rome", target_true="Oslo")
    assert retention(model, tokenizer, [[kept], [lost], [kept, lost]]) == [1.0, 0.0, 0.5]


def test_report_scores_rows_per_request_and_per_suite(tokenizer):
    report = evaluate_requests(fixed_logits_model(tokenizer, {"Paris": 3.0}), tokenizer, [REQUEST])
    scores = report_scores(report, suite="counterfact")
    per_request = [s for s in scores if s.request_key is not None]
    suite = {s.metric: s.value for s in scores if s.request_key is None}
    assert {s.request_key for s in per_request} == {REQUEST.request_key}
    assert {s.metric for s in per_request} == set(report.per_request[0]) & set(suite)
    assert suite["efficacy"] == 1.0 and all(s.suite == "counterfact" for s in scores)
