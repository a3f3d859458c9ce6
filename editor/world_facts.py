"""What a fact world is made of: its presets, the facts it knows (invented people with facts over several
relations, or a CounterFact file's records), the sentences it trains on, and the text it is measured with
(`editor.world` builds it; see there for why a `--from` world's statements are as they are)."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from editor.readers import read_requests

# At most this share of a world's subjects may be edited (facts.json); the others are never edited
# (preserved.json), so specificity and held-out perplexity read facts that no edit was meant to change.
EDITABLE_SHARE = 0.5
INVENTED_PER_FACT = 2  # a `--from` world: invented people per record whose true object is the record's target_new


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


def record_texts(record: dict[str, Any]) -> list[str]:
    """Every text of a CounterFact record, so that the tokenizer knows the words of its prompts and targets."""
    rewrite = record["requested_rewrite"]
    texts = [rewrite["prompt"], rewrite["subject"], rewrite["target_true"]["str"], rewrite["target_new"]["str"]]
    for key in ("paraphrase_prompts", "neighborhood_prompts", "attribute_prompts", "generation_prompts"):
        texts.extend(record.get(key, []))
    return texts


def heldout_text(records: list[dict[str, Any]], preserved: list[dict[str, Any]], subjects: list[str],
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
