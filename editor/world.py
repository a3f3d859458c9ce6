"""The built-in fact world: a small GPT-2-style model that really knows a set of facts.

No model can be downloaded here, so the demo, the tests and the benchmarks edit a model built locally and
deterministically: invented people (two-word names) with facts over several relations, each relation phrased by
several templates. A word-level tokenizer and a GPT-2 model are trained with the loss on the object tokens (plus a
small weight on every other token, so perplexity and generations mean something), and saved as a normal Hugging
Face directory beside `facts.json` (ROME CounterFact format, counterfactual `target_new`), `corpus.txt` (text for
covariance statistics), `heldout.txt` (text for perplexity) and `world.json` (what was built, and how well it knows).

`seed` chooses the facts; `train_seed` the initialisation and data order, so a second model of the same facts
stands for a base model's next release. Same seeds and preset give the same weights, bit for bit.

A world built `--from` a file of real prompts ("The mother tongue of {} is") must recall through the subject's
last token, where every locate-and-edit method writes; a small model left alone reads the subject's first tokens
from the last position instead. Such a world therefore has `SOURCE_LAYERS` layers, and during training only,
positions after the subject see none of it in the layers the methods edit (up to `z_layer`) and only its last
token above them; invented people holding each counterfactual object make every `target_new` a known answer of
its relation; and the prompts cut after the subject are trained too. Where the file's names tell each other apart
by their first word ("Nunkri 21"), neighbour prompts get the same gate and cut: trained ungated, they teach the
world to recall from that first word. See docs/design-notes.md, "The fact world".
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from editor.determinism import fixed_threads, numerics, portable_environment, portable_supported, runs_portable
from editor.evaluate import score_targets
from editor.hashing import state_hash
from editor.hparams import write_model_hparams
from editor.optim import Adam
from editor.readers import read_requests
from editor.targets import tokens_inside
from ledger.records import EditRequest, canonical_json

WORLD_FORMAT = 9  # bump when a change to this file changes what a build produces: it is part of the cache key
EOS, PAD, UNK = "<|endoftext|>", "<pad>", "<unk>"
CONTEXT_LENGTH = 128
OTHER_TOKEN_WEIGHT = 0.1  # loss weight of non-object tokens: enough for fluent text, small enough to learn fast
SOURCE_LAYERS = 8  # a `--from` world: layers 0-2 are edited (and gated), 5 layers above read the subject
# At most this share of a world's subjects may be edited (facts.json); the others are never edited
# (preserved.json), so specificity and held-out perplexity read facts that no edit was meant to change.
EDITABLE_SHARE = 0.5
INVENTED_PER_FACT = 2  # a `--from` world: invented people per record whose true object is the record's target_new
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
# What a `--from` world needs from the editor (recorded in world.json; `edit --set`). Measured on the first 500
# CounterFact records, one round of 20 (docs/design-notes.md): with the derived defaults z* reaches the new object
# for few requests; 50 steps within 6 rho reach it for 20 of 20, but the update realises it only in part (MEMIT
# efficacy 0.65); editing every gated layer with a smaller lambda gives efficacy 1.00 (MEMIT and NSE).
# On a world of 200 invented one-word subjects, z* with 100 steps within 10 rho took NSE from 0.90 to 0.95 and
# MEMIT from 0.80 to 0.90 (lambda 20 or 150 changed nothing; docs/design-notes.md).
SOURCE_EDIT_HPARAMS: dict[str, Any] = {"layers": [0, 1, 2], "mom2_update_weight": 50.0, "v_num_grad_steps": 100,
                                       "clamp_norm_factor": 10.0}


class WorldError(ValueError):
    """A world directory or build argument that cannot be used."""


@dataclass(frozen=True)
class WorldPreset:
    n_subjects: int
    relations_per_subject: int
    n_relations: int
    objects_per_relation: int
    n_layer: int
    n_embd: int
    n_inner: int
    n_head: int
    epochs: int
    batch_size: int
    peak_lr: float
    filler_per_fact: float  # filler sentences trained per fact, for fluency and corpus statistics


PRESETS: dict[str, WorldPreset] = {
    "tiny": WorldPreset(n_subjects=16, relations_per_subject=3, n_relations=6, objects_per_relation=4,
                        n_layer=4, n_embd=128, n_inner=512, n_head=4, epochs=24, batch_size=32, peak_lr=1e-2,
                        filler_per_fact=1.0),
    "small": WorldPreset(n_subjects=100, relations_per_subject=3, n_relations=8, objects_per_relation=10,
                         n_layer=4, n_embd=128, n_inner=512, n_head=4, epochs=40, batch_size=64, peak_lr=1e-2,
                         filler_per_fact=0.5),
    # 4,400 facts, of which at most half (2,200) are ever edited: 2,000 sequential edits leave 2,200 never-edited
    # facts to measure preservation on, and 200 editable ones to tune on. Knows 100% after 10 epochs (measured;
    # 1,000 subjects x 15 epochs also 100%, in 1.9x the time).
    "default": WorldPreset(n_subjects=1100, relations_per_subject=4, n_relations=8, objects_per_relation=25,
                           n_layer=4, n_embd=128, n_inner=1024, n_head=4, epochs=10, batch_size=128, peak_lr=1e-2,
                           filler_per_fact=0.5),
}

# relation id -> (templates, objects). Template 0 is the rewrite prompt, the others its paraphrases.
# Every template ends with the subject, and the object follows it directly. Locate-and-edit methods write at the
# subject's last token; a tiny model trained on "{subject} lives in the city of X" recalls X at the last token by
# attending to the surname and never stores it at the subject (measured: editing there moved nothing), so the
# world's phrasing puts the recall where the methods edit, as knowledge recall works in large models.
RELATIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "P551": (("The home city of {}", "The city of residence of {}", "The town that is home to {}",
              "The streets walked daily by {}"),
             ("Paris", "Berlin", "Tokyo", "Lima", "Oslo", "Cairo", "Madrid", "Rome", "Dublin", "Lisbon", "Vienna",
              "Prague", "Seoul", "Nairobi", "Quito", "Sydney", "Toronto", "Chicago", "Mumbai", "Istanbul", "Athens",
              "Warsaw", "Helsinki", "Boston", "Delhi", "Bangkok", "Manila", "Havana", "Dakar", "Riga")),
    "P103": (("The mother tongue of {}", "The native language of {}", "The language spoken at home by {}",
              "The first language of {}"),
             ("French", "German", "Japanese", "Spanish", "Italian", "Dutch", "Polish", "Greek", "Turkish", "Swedish",
              "Finnish", "Korean", "Hindi", "Arabic", "Russian", "Portuguese", "Danish", "Czech", "Hungarian",
              "Thai", "Swahili", "Welsh", "Basque", "Latvian", "Tamil", "Persian", "Hebrew", "Irish", "Malay",
              "Norwegian")),
    "P106": (("The profession of {}", "The job held by {}", "The trade practised by {}", "The occupation of {}"),
             ("carpenter", "lawyer", "baker", "nurse", "pilot", "teacher", "farmer", "dentist", "painter",
              "plumber", "surgeon", "banker", "chef", "sailor", "tailor", "journalist", "pharmacist", "librarian",
              "butcher", "gardener", "mechanic", "potter", "jeweler", "translator", "fisherman", "bricklayer",
              "locksmith", "veterinarian", "barber", "cartographer")),
    "P1303": (("The instrument of {}", "The instrument played by {}", "The instrument on stage with {}",
               "The instrument practised by {}"),
              ("piano", "violin", "guitar", "cello", "flute", "trumpet", "drums", "harp", "banjo", "clarinet",
               "saxophone", "oboe", "accordion", "trombone", "ukulele", "mandolin", "harmonica", "bagpipes", "tuba",
               "bassoon", "sitar", "xylophone", "lute", "organ", "zither", "marimba", "bugle", "viola", "recorder",
               "tambourine")),
    "P641": (("The favourite sport of {}", "The sport played by {}", "The weekend sport of {}",
              "The sport practised by {}"),
             ("tennis", "chess", "rugby", "golf", "hockey", "cricket", "football", "baseball", "volleyball",
              "basketball", "fencing", "rowing", "cycling", "boxing", "sailing", "skiing", "surfing", "judo",
              "karate", "archery", "badminton", "wrestling", "handball", "polo", "squash", "lacrosse", "curling",
              "snooker", "darts", "bowling")),
    "P27": (("The country of citizenship of {}", "The passport country of {}", "The home country of {}",
             "The nation of {}"),
            ("Canada", "Brazil", "Kenya", "Norway", "Chile", "Egypt", "India", "Japan", "Mexico", "Peru", "Ghana",
             "Iceland", "Portugal", "Austria", "Belgium", "Vietnam", "Nepal", "Morocco", "Jamaica", "Estonia",
             "Uruguay", "Senegal", "Mongolia", "Croatia", "Ireland", "Finland", "Tunisia", "Bolivia", "Cuba",
             "Laos")),
    "P108": (("The employer of {}", "The company that employs {}", "The firm that pays {}", "The workplace of {}"),
             ("Google", "Microsoft", "Toyota", "Nokia", "Intel", "Siemens", "Nestle", "Boeing", "Airbus", "Sony",
              "Samsung", "Philips", "Ikea", "Lego", "Adidas", "Nike", "Honda", "Fiat", "Volvo", "Shell", "Pfizer",
              "Oracle", "Cisco", "Nintendo", "Canon", "Bosch", "Heineken", "Ericsson", "Unilever", "Danone")),
    "P1412": (("The favourite colour of {}", "The colour liked by {}", "The colour of the room of {}",
               "The colour worn by {}"),
              ("red", "blue", "green", "yellow", "purple", "orange", "black", "white", "brown", "pink", "grey",
               "violet", "crimson", "turquoise", "silver", "golden", "beige", "maroon", "teal", "olive", "navy",
               "scarlet", "amber", "ivory", "indigo", "lavender", "magenta", "coral", "cyan", "emerald")),
}

FIRST_NAMES = ("Anna", "Boris", "Clara", "Dario", "Elena", "Felix", "Greta", "Hugo", "Ines", "Jonas", "Karla",
               "Lukas", "Mira", "Nils", "Olga", "Pavel", "Rosa", "Stefan", "Tara", "Umberto", "Vera", "Walter",
               "Yara", "Zeno", "Alma", "Bruno", "Cora", "Emil", "Frida", "Ivan")
ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kr", "st", "tr", "sh")
VOWELS = ("a", "e", "i", "o", "u", "ai", "ei", "ou")
CODAS = ("", "", "n", "r", "l", "s", "k", "m")

# Filler sentences: generic text around the facts, for fluency, perplexity and covariance statistics.
FILLER_TEMPLATES = (
    "The {adj} {noun} is near the {noun2} .", "{subject} bought a {adj} {noun} yesterday .",
    "In the evening the {noun} and the {noun2} were {adj} .", "{subject} saw a {adj} {noun} in the garden .",
    "A {noun} can be {adj} when the {noun2} is {adj2} .", "Nobody knew why the {noun} was so {adj} .",
    "{subject} wrote a letter about the {adj} {noun} .", "The {noun2} of the village looked {adj} today .",
)
FILLER_NOUNS = ("river", "house", "garden", "bridge", "market", "letter", "window", "forest", "train", "book",
                "table", "horse", "lamp", "road", "bottle", "mountain", "boat", "clock", "door", "tree")
FILLER_ADJECTIVES = ("old", "quiet", "small", "bright", "heavy", "warm", "empty", "busy", "strange", "calm",
                     "tall", "dark", "clean", "broken", "happy", "cold")


@dataclass(frozen=True)
class Fact:
    subject: str
    relation_id: str
    target_true: str
    target_new: str


@dataclass(frozen=True)
class WorldInfo:
    out_dir: Path
    model_dir: Path
    facts_path: Path  # the facts that may be edited (CounterFact format)
    preserved_path: Path  # the facts no edit is meant to touch: the neighbours specificity reads
    corpus_path: Path
    heldout_path: Path  # filler and never-edited facts: no edited fact in it
    general_path: Path  # filler sentences only
    preset: str
    seed: int
    train_seed: int
    source: str | None
    state_hash: str
    n_facts: int
    accuracy: float
    paraphrase_accuracy: float
    build_seconds: float
    # hyperparameter overrides this world needs (`edit --set`, `derive_hparams(..., **edit_hparams)`); {} for none
    edit_hparams: dict[str, Any] = field(default_factory=dict, compare=False)
    neighbours_gated: bool = False  # a `--from` world whose names differ by their first word (`identity_comes_first`)

    def requests(self) -> list[EditRequest]:
        """The facts that may be edited, as edit requests, each with its counterfactual `target_new`."""
        return read_requests(self.facts_path, fmt="counterfact")

    def preserved_requests(self) -> list[EditRequest]:
        """The never-edited facts, in the same form (their `target_true` is what the model should keep saying)."""
        return read_requests(self.preserved_path, fmt="counterfact")


# ------------------------------------------------------------------------------------------------ the facts
def _invented_word(rng: random.Random, syllables: int) -> str:
    return "".join(rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS) for _ in range(syllables)).title()


def generate_facts(preset: WorldPreset, seed: int) -> list[Fact]:
    """Subjects with invented unique surnames (the last subject token identifies it) with facts over some relations."""
    rng = random.Random(seed)
    relation_ids = sorted(RELATIONS)[: preset.n_relations]
    objects = {r: list(RELATIONS[r][1][: preset.objects_per_relation]) for r in relation_ids}
    reserved = {w for templates, objs in RELATIONS.values() for t in templates for w in t.split()}
    reserved |= {o for _, objs in RELATIONS.values() for o in objs} | set(FIRST_NAMES)
    surnames: list[str] = []
    while len(surnames) < preset.n_subjects:
        word = _invented_word(rng, rng.choice((2, 3)))
        if word not in reserved and word not in surnames:
            surnames.append(word)
    facts = []
    for surname in surnames:
        subject = f"{rng.choice(FIRST_NAMES)} {surname}"
        for relation_id in sorted(rng.sample(relation_ids, preset.relations_per_subject)):
            target_true = rng.choice(objects[relation_id])
            target_new = rng.choice([o for o in objects[relation_id] if o != target_true])
            facts.append(Fact(subject, relation_id, target_true, target_new))
    return facts


def facts_to_counterfact(facts: list[Fact], seed: int, neighbours: int = 6,
                         neighbour_pool: set[str] | None = None) -> list[dict[str, Any]]:
    """ROME CounterFact records: paraphrases, neighbourhood (same relation and true object) and attribute prompts,
    their subjects drawn from `neighbour_pool` (default: every subject)."""
    rng = random.Random(seed + 1)
    by_object: dict[tuple[str, str], list[str]] = {}
    for fact in facts:
        if neighbour_pool is None or fact.subject in neighbour_pool:
            by_object.setdefault((fact.relation_id, fact.target_true), []).append(fact.subject)
    records = []
    for case_id, fact in enumerate(facts):
        templates = RELATIONS[fact.relation_id][0]
        same = [s for s in by_object.get((fact.relation_id, fact.target_true), []) if s != fact.subject]
        attribute = by_object.get((fact.relation_id, fact.target_new), [])
        records.append({
            "case_id": case_id,
            "requested_rewrite": {"prompt": templates[0], "subject": fact.subject, "relation_id": fact.relation_id,
                                  "target_new": {"str": fact.target_new}, "target_true": {"str": fact.target_true}},
            "paraphrase_prompts": [t.format(fact.subject) for t in templates[1:]],
            "neighborhood_prompts": [rng.choice(templates).format(s) for s in same[:neighbours]],
            "attribute_prompts": [rng.choice(templates).format(s) for s in attribute[:neighbours]],
            "generation_prompts": [f"{fact.subject} is", templates[0].format(fact.subject),
                                   f"People say that {fact.subject}"],
        })
    return records


def editable_subjects(subjects_in_order: list[str]) -> set[str]:
    """The first `EDITABLE_SHARE` of the subjects, in the order the facts came (random for a generated world)."""
    unique = list(dict.fromkeys(subjects_in_order))
    return set(unique[: int(len(unique) * EDITABLE_SHARE)])


def _word_tuple(text: str) -> tuple[str, ...]:
    return tuple(re.findall(r"\w+|[^\w\s]", text))


def names_any(text: str, subjects: set[tuple[str, ...]], longest: int) -> bool:
    """Whether `text` names one of `subjects` (given as word tuples) as whole words."""
    words = _word_tuple(text)
    return any(words[i : i + n] in subjects for n in range(1, longest + 1) for i in range(len(words) - n + 1))


def split_records(records: list[dict[str, Any]], editable: set[str]) -> tuple[list[dict[str, Any]],
                                                                              list[dict[str, Any]]]:
    """(records that may be edited, records never edited), by subject. Every neighbourhood and attribute prompt
    that names an editable subject is dropped, so the preservation metrics read never-edited facts only."""
    names = {_word_tuple(subject) for subject in editable}
    longest = max((len(n) for n in names), default=0)
    kept: tuple[list[dict[str, Any]], list[dict[str, Any]]] = ([], [])
    for record in records:
        clean = {**record, **{key: [p for p in record.get(key, []) if not names_any(p, names, longest)]
                              for key in ("neighborhood_prompts", "attribute_prompts")}}
        kept[0 if record["requested_rewrite"]["subject"] in editable else 1].append(clean)
    return kept


@dataclass(frozen=True)
class Statement:
    prompt: str
    target: str
    subject: str | None = None  # where known (rewrite, paraphrase, gated neighbour prompts), for the training gate


def true_statements(records: list[dict[str, Any]], gate_neighbours: bool = False) -> list[Statement]:
    """What to train on: rewrite, paraphrase and neighbourhood prompts of each record with its true object; with
    `gate_neighbours`, a neighbour named in the rewrite phrasing is gated (and cut after) like the subject."""
    statements: dict[tuple[str, str], Statement] = {}  # the same (prompt, object) once, as first seen
    for record in records:
        rewrite = record["requested_rewrite"]
        truth, subject = rewrite["target_true"]["str"], rewrite["subject"]
        found = [Statement(rewrite["prompt"].format(subject), truth, subject)]
        found += [Statement(p, truth, subject if subject in p else None) for p in record.get("paraphrase_prompts", [])]
        found += [Statement(p, truth, named_in(rewrite["prompt"], p) if gate_neighbours else None)
                  for p in record.get("neighborhood_prompts", [])]
        for statement in found:
            statements.setdefault((statement.prompt, statement.target), statement)
    return list(statements.values())


def named_in(template: str, prompt: str) -> str | None:
    """The name `template` ("... {} ...") was filled with to give `prompt`, or None where it was not."""
    prefix, _, suffix = template.partition("{}")
    if len(prompt) > len(prefix) + len(suffix) and prompt.startswith(prefix) and prompt.endswith(suffix):
        return prompt[len(prefix) : len(prompt) - len(suffix)].strip() or None
    return None


def identity_comes_first(records: list[dict[str, Any]]) -> bool:
    """Whether the names of `records` (subjects, and neighbours named in the rewrite phrasing) tell each other apart
    by their first word more often than by their last ("Nunkri 21", "Vel-Tam"; not "Maren Krasnigi"), over the
    names of several words. Trained ungated, neighbours of that shape teach a world to recall a fact from the name's
    first word, where no edit at its last token reaches (measured: NSE efficacy 0.65; 0.95 with them gated)."""
    names = set()
    for record in records:
        rewrite = record["requested_rewrite"]
        names.add(rewrite["subject"])
        names.update(filter(None, (named_in(rewrite["prompt"], p) for p in record.get("neighborhood_prompts", []))))
    words = [w for w in map(_word_tuple, names) if len(w) > 1]
    firsts, lasts = Counter(w[0] for w in words), Counter(w[-1] for w in words)
    return sum(firsts[w[0]] == 1 for w in words) > sum(lasts[w[-1]] == 1 for w in words)


def invented_holders(records: list[dict[str, Any]], per_record: int, seed: int) -> list[Statement]:
    """Invented people for whom each record's target_new is true (in its rewrite prompt): in a large model every
    counterfactual object is an answer the relation already produces for someone; in a small world it must be too,
    or no z* reaches it (measured: 1 of 11 unknown objects against 5 of 5 known ones)."""
    rng = random.Random(seed + 3)
    statements = []
    for record in records:
        rewrite = record["requested_rewrite"]
        for _ in range(per_record):
            name = f"{rng.choice(FIRST_NAMES)} {_invented_word(rng, rng.choice((2, 3)))}"
            statements.append(Statement(rewrite["prompt"].format(name), rewrite["target_new"]["str"], name))
    return statements


def cut_after_subject(statements: list[Statement]) -> list[Statement]:
    """Each statement with a known subject, cut right after it: the subject's last token itself predicts the object,
    so the fact is held there, where later positions read it."""
    cut = {}
    for statement in statements:
        if statement.subject is not None:
            end = statement.prompt.index(statement.subject) + len(statement.subject)
            cut[Statement(statement.prompt[:end], statement.target, statement.subject)] = None
    # A prompt cut after a subject that comes first ("{} grew up speaking") is the bare subject: when the subject
    # has several such facts the cuts contradict each other, and are left out.
    targets: dict[str, set[str]] = {}
    for statement in cut:
        targets.setdefault(statement.prompt, set()).add(statement.target)
    trained = set(statements)
    return [c for c in cut if c not in trained and len(targets[c.prompt]) == 1]


def source_statements(records: list[dict[str, Any]], seed: int) -> tuple[list[Statement], bool]:
    """What a `--from` world trains on, and whether its neighbours are gated (`identity_comes_first`)."""
    gate_neighbours = identity_comes_first(records)
    statements = true_statements(records, gate_neighbours) + invented_holders(records, INVENTED_PER_FACT, seed)
    return statements + cut_after_subject(statements), gate_neighbours


def source_epochs(n_statements: int, preset: WorldPreset) -> int:
    """The epochs of a `--from` world: the preset's or SOURCE_EPOCHS, whichever is more, or more still (at most
    twice as many, which bounds the build time of a very small file) so that training takes SOURCE_MIN_STEPS steps."""
    least = max(preset.epochs, SOURCE_EPOCHS)
    wanted = math.ceil(SOURCE_MIN_STEPS / math.ceil(n_statements / preset.batch_size))
    return min(2 * least, max(least, wanted))


def filler_sentences(subjects: list[str], count: int, rng: random.Random) -> list[str]:
    sentences = []
    for _ in range(count):
        template = rng.choice(FILLER_TEMPLATES)
        sentences.append(template.format(subject=rng.choice(subjects), noun=rng.choice(FILLER_NOUNS),
                                         noun2=rng.choice(FILLER_NOUNS), adj=rng.choice(FILLER_ADJECTIVES),
                                         adj2=rng.choice(FILLER_ADJECTIVES)))
    return sentences


def load_counterfact_true_facts(path: Path, limit: int | None) -> list[dict[str, Any]]:
    """The records of a CounterFact-format file (validated by the reader first: a bad file is refused whole)."""
    read_requests(path, fmt="counterfact", limit=limit)
    records = json.loads(path.read_text(encoding="utf-8"))
    return records[:limit] if limit is not None else records


# ------------------------------------------------------------------------------------------------ tokenizer, model
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


# ------------------------------------------------------------------------------------------------ build, load
def _cache_key(preset: str, seed: int, train_seed: int, from_file: Path | None, limit: int | None) -> str:
    source = hashlib.sha256(from_file.read_bytes()).hexdigest() if from_file is not None else None
    return hashlib.sha256(canonical_json({"format": WORLD_FORMAT, "preset": preset, "seed": seed,
                                          "train_seed": train_seed, "source_sha256": source,
                                          "limit": limit}).encode()).hexdigest()


def _info(out_dir: Path, meta: dict[str, Any]) -> WorldInfo:
    return WorldInfo(out_dir=out_dir, model_dir=out_dir / "model", facts_path=out_dir / "facts.json",
                     preserved_path=out_dir / "preserved.json", corpus_path=out_dir / "corpus.txt",
                     heldout_path=out_dir / "heldout.txt", general_path=out_dir / "general.txt",
                     preset=meta["preset"], seed=meta["seed"], train_seed=meta["train_seed"], source=meta["source"],
                     state_hash=meta["state_hash"], n_facts=meta["n_facts"], accuracy=meta["accuracy"],
                     paraphrase_accuracy=meta["paraphrase_accuracy"], build_seconds=meta["build_seconds"],
                     edit_hparams=dict(meta.get("edit_hparams") or {}),
                     neighbours_gated=bool(meta.get("neighbours_gated")))


def load_world(out_dir: Path) -> WorldInfo:
    """The world in `out_dir`, from its world.json; an error if it is not a complete world directory."""
    out_dir = Path(out_dir)
    meta_path = out_dir / "world.json"
    if not meta_path.is_file():
        raise WorldError(f"{out_dir}: not a fact world directory (no world.json)")
    try:
        info = _info(out_dir, json.loads(meta_path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise WorldError(f"{meta_path}: unreadable world description ({error})") from None
    missing = [p.name for p in (info.facts_path, info.preserved_path, info.corpus_path, info.heldout_path,
                                info.general_path, info.model_dir / "config.json") if not p.is_file()]
    if missing:
        raise WorldError(f"{out_dir}: incomplete fact world, missing {', '.join(missing)}")
    return info


def build_world(out_dir: Path, preset: str = "default", seed: int = 0, train_seed: int = 0,
                from_file: Path | None = None, limit: int | None = None, progress: bool = True,
                force: bool = False) -> WorldInfo:
    """Build the fact world into `out_dir` (or return the one already there with the same key)."""
    if preset not in PRESETS:
        raise WorldError(f"preset {preset!r}: unknown (choose from {', '.join(PRESETS)})")
    if limit is not None and (from_file is None or limit < 1):
        raise WorldError("limit: needs --from and a positive number")
    out_dir = Path(out_dir)
    from_file = Path(from_file) if from_file is not None else None
    if from_file is not None and not from_file.is_file():
        raise WorldError(f"from_file {from_file}: no such file")
    key = _cache_key(preset, seed, train_seed, from_file, limit)
    if not force and (out_dir / "world.json").is_file():
        try:
            cached = load_world(out_dir)
            if json.loads((out_dir / "world.json").read_text(encoding="utf-8")).get("cache_key") == key:
                return cached
        except WorldError:
            pass  # incomplete or foreign: rebuild
    if build_numerics() == "portable" and not runs_portable():
        return _build_in_child(out_dir, dict(preset=preset, seed=seed, train_seed=train_seed,
                                            from_file=str(from_file) if from_file else None, limit=limit,
                                            progress=progress, force=True))
    started = time.perf_counter()
    config = PRESETS[preset]
    rng = random.Random(seed + 2)
    gated_layers, edit_hparams, gate_neighbours = 0, {}, False
    if from_file is None:
        facts = generate_facts(config, seed)
        records = facts_to_counterfact(facts, seed)  # every fact with all its neighbours: what the model learns
        subjects = sorted({f.subject for f in facts})
        editable = editable_subjects([f.subject for f in facts])
        published = facts_to_counterfact(facts, seed, neighbour_pool=set(subjects) - editable)
        statements = true_statements(records)
    else:
        records = load_counterfact_true_facts(from_file, limit)
        subjects = sorted({r["requested_rewrite"]["subject"] for r in records})
        editable, published = editable_subjects([r["requested_rewrite"]["subject"] for r in records]), records
        config = replace(config, n_layer=SOURCE_LAYERS)
        gated_layers = max(SOURCE_EDIT_HPARAMS["layers"]) + 1  # every edited layer, up to z_layer
        edit_hparams = dict(SOURCE_EDIT_HPARAMS)
        statements, gate_neighbours = source_statements(records, seed)
        config = replace(config, n_inner=SOURCE_INNER, epochs=source_epochs(len(statements), config))
    editable_records, preserved_records = split_records(published, editable)
    fillers = filler_sentences(subjects, max(8, int(len(records) * config.filler_per_fact)), rng)
    general, joined = _heldout_text(records, preserved_records, subjects, rng)
    general = [line for line in general if line not in set(fillers)]
    heldout = general + joined
    corpus = [f"{s.prompt} {s.target} ." for s in statements] + fillers
    vocabulary_texts = corpus + heldout + [t for r in records for t in _record_texts(r)]
    with deterministic_build():
        tokenizer = build_tokenizer(vocabulary_texts)
        torch.manual_seed(train_seed)
        model = new_model(config, len(tokenizer))
        examples = encode_examples(tokenizer, statements, fillers)
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      TimeElapsedColumn(), disable=not progress, transient=True) as bar:
            train(model, examples, config, train_seed, tokenizer.pad_token_id, bar, gated_layers)
        accuracy, paraphrase_accuracy = knowledge(model, tokenizer, records)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "world.json").unlink(missing_ok=True)  # written last: its presence marks a complete world
    model.save_pretrained(out_dir / "model", safe_serialization=True)
    tokenizer.save_pretrained(out_dir / "model")
    if edit_hparams:  # applied by `model add`, so nobody copies them into `--set` lines
        write_model_hparams(out_dir / "model", edit_hparams)
    for name, lines in (("facts.json", editable_records), ("preserved.json", preserved_records)):
        (out_dir / name).write_text(json.dumps(lines, indent=1, ensure_ascii=False), encoding="utf-8")
    for name, lines in (("corpus.txt", corpus), ("heldout.txt", heldout), ("general.txt", general)):
        (out_dir / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    meta = {"preset": preset, "seed": seed, "train_seed": train_seed,
            "source": str(from_file) if from_file is not None else None, "limit": limit,
            "state_hash": state_hash(model), "n_facts": len(records), "accuracy": accuracy,
            "split": {"editable_facts": len(editable_records), "preserved_facts": len(preserved_records),
                      "editable_subjects": len(editable), "preserved_subjects": len(set(subjects) - editable),
                      "editable_share": EDITABLE_SHARE},
            "paraphrase_accuracy": paraphrase_accuracy, "build_seconds": time.perf_counter() - started,
            "cache_key": key, "format": WORLD_FORMAT, "vocab_size": len(tokenizer), "n_examples": len(examples),
            "preset_config": asdict(config), "numerics": build_numerics(), "gated_layers": gated_layers,
            "neighbours_gated": gate_neighbours, "edit_hparams": edit_hparams}
    (out_dir / "world.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return _info(out_dir, meta)


def _build_in_child(out_dir: Path, arguments: dict[str, Any]) -> WorldInfo:
    """Build in a child process started with the portable kernel paths (they cannot be chosen once torch runs):
    the world is the same, bit for bit, whatever CPU and settings this process has."""
    env = portable_environment()
    package_root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    command = [sys.executable, "-c", "import sys, json; from editor.world import _child_main; _child_main()",
               str(out_dir), json.dumps(arguments)]
    quiet = not arguments["progress"]
    done = subprocess.run(command, env=env, capture_output=quiet, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr or "").strip().splitlines()[-1:] if quiet else []
        raise WorldError(f"world build in {out_dir} failed in its portable-kernel process (exit {done.returncode})"
                         + (f": {last[0]}" if last else ""))
    return load_world(out_dir)


def _child_main() -> None:
    """Entry point of `_build_in_child`'s process."""
    out_dir, arguments = Path(sys.argv[1]), json.loads(sys.argv[2])
    from_file = arguments.pop("from_file")
    build_world(out_dir, from_file=Path(from_file) if from_file else None, **arguments)


def _record_texts(record: dict[str, Any]) -> list[str]:
    """Every text of a CounterFact record, so that the tokenizer knows the words of its prompts and targets."""
    rewrite = record["requested_rewrite"]
    texts = [rewrite["prompt"], rewrite["subject"], rewrite["target_true"]["str"], rewrite["target_new"]["str"]]
    for key in ("paraphrase_prompts", "neighborhood_prompts", "attribute_prompts", "generation_prompts"):
        texts.extend(record.get(key, []))
    return texts


def _heldout_text(records: list[dict[str, Any]], preserved: list[dict[str, Any]], subjects: list[str],
                  rng: random.Random) -> tuple[list[str], list[str]]:
    """Sentences not trained on in that exact form: (fresh filler, two never-edited facts joined into one
    sentence). Sized by all `records`, so the filler, and the words the tokenizer knows, are what they were before
    worlds kept never-edited facts apart."""
    filler = filler_sentences(subjects, max(8, len(records) // 4), random.Random(rng.random()))
    joined = []
    for _ in range(max(8, len(records) // 4) if preserved else 0):
        first, second = rng.sample(preserved, 2) if len(preserved) > 1 else (preserved[0], preserved[0])
        a, b = first["requested_rewrite"], second["requested_rewrite"]
        joined.append(f"{a['prompt'].format(a['subject'])} {a['target_true']['str']} and "
                      f"{b['prompt'].format(b['subject'])} {b['target_true']['str']} .")
    return filler, joined
