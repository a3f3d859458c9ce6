"""Fact sets of our own making in CounterFact format, to build `--from` worlds from something other than CounterFact.

Each set is generated deterministically from its spec and seed and differs from the others in what a `--from`
recipe could silently depend on: the shape of the subjects' names (one word, two words, three-word titles,
hyphenated or with digits), how many relations there are, how long the prompts are (a clause before the subject or
not, the subject first or last) and whether paraphrases start with an unrelated sentence as CounterFact's do.

Records are built as CounterFact's: a rewrite with a counterfactual `target_new` (another object of the
relation), paraphrases, neighbourhood prompts (other entities with the same relation and true object, which are
not themselves records), attribute prompts (entities whose true object is `target_new`) and generation prompts.

`python -m benchmarks.fact_sets DIR` writes every set as `DIR/<name>.json`.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# relation id -> (phrasings, objects). A phrasing holds `{}` for the subject and ends before the object; the
# first is the rewrite prompt, the others paraphrases. Objects are single words.
RELATIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "R01": (("The mother tongue of {} is", "{} grew up speaking", "The first language of {} is"),
            ("Welsh", "Basque", "Tamil", "Finnish", "Dutch", "Greek", "Polish", "Korean", "Swahili", "Hebrew",
             "Czech", "Thai", "Danish", "Malay", "Irish", "Latvian")),
    "R02": (("{} lives in the city of", "The home town of {} is", "{} has an apartment in"),
            ("Lisbon", "Oslo", "Quito", "Riga", "Dakar", "Lima", "Vienna", "Hanoi", "Perth", "Turin", "Bergen",
             "Kyoto", "Accra", "Minsk", "Porto", "Graz")),
    "R03": (("The profession of {} is", "{} works as a", "By trade, {} is a"),
            ("carpenter", "lawyer", "baker", "nurse", "pilot", "dentist", "plumber", "surgeon", "tailor",
             "librarian", "butcher", "gardener", "mechanic", "potter", "jeweler", "locksmith")),
    "R04": (("{} plays the", "The instrument of {} is the", "On stage, {} performs on the"),
            ("piano", "violin", "cello", "flute", "trumpet", "harp", "banjo", "clarinet", "oboe", "accordion",
             "trombone", "ukulele", "mandolin", "tuba", "bassoon", "sitar")),
    "R05": (("The favourite sport of {} is", "{} spends weekends playing", "The sport {} loves is"),
            ("tennis", "rugby", "golf", "hockey", "cricket", "baseball", "volleyball", "fencing", "rowing",
             "boxing", "sailing", "judo", "archery", "badminton", "squash", "curling")),
    "R06": (("{} is a citizen of", "The passport of {} was issued by", "The nationality of {} is"),
            ("Canada", "Brazil", "Kenya", "Norway", "Chile", "Egypt", "Mexico", "Ghana", "Iceland", "Austria",
             "Belgium", "Vietnam", "Nepal", "Morocco", "Jamaica", "Estonia")),
    "R07": (("The employer of {} is", "{} is employed by", "Every month {} is paid by"),
            ("Siemens", "Nestle", "Boeing", "Airbus", "Philips", "Ikea", "Lego", "Adidas", "Fiat", "Volvo",
             "Pfizer", "Oracle", "Cisco", "Canon", "Bosch", "Danone")),
    "R08": (("The favourite colour of {} is", "{} always dresses in", "The colour chosen by {} is"),
            ("crimson", "turquoise", "silver", "golden", "beige", "maroon", "teal", "olive", "navy", "scarlet",
             "amber", "ivory", "indigo", "lavender", "magenta", "coral")),
    "R09": (("The religion of {} is", "{} is a follower of", "The faith practised by {} is"),
            ("Buddhism", "Islam", "Judaism", "Hinduism", "Sikhism", "Taoism", "Shinto", "Jainism", "Catholicism",
             "Anglicanism", "Lutheranism", "Quakerism", "Zoroastrianism", "Bahai", "Orthodoxy", "Methodism")),
    "R10": (("The pet of {} is a", "{} takes care of a", "At home, {} keeps a"),
            ("parrot", "hamster", "tortoise", "ferret", "rabbit", "goldfish", "lizard", "canary", "iguana",
             "gecko", "beagle", "poodle", "terrier", "chinchilla", "pony", "goat")),
    "R11": (("The favourite food of {} is", "{} likes to eat", "For dinner {} usually orders"),
            ("sushi", "pasta", "curry", "paella", "tacos", "ramen", "risotto", "goulash", "falafel", "lasagna",
             "dumplings", "kebab", "pizza", "couscous", "gnocchi", "moussaka")),
    "R12": (("The car of {} is a", "{} drives a", "Parked outside the house of {} is a"),
            ("Toyota", "Honda", "Renault", "Peugeot", "Skoda", "Mazda", "Subaru", "Kia", "Hyundai", "Opel",
             "Saab", "Seat", "Suzuki", "Lada", "Citroen", "Dacia")),
}

# Clauses put before a prompt ("long" prompts), and unrelated sentences before paraphrases ("distractors").
CLAUSES = ("According to the old records kept in the town hall,", "As everyone in the neighbourhood knows,",
           "In the biography published last spring,", "Long before the war began,",
           "Said the reporter on the evening news:", "When the guests asked about it over dinner,")
DISTRACTORS = ("The river froze early that year.", "Nobody answered the phone on Sunday.",
               "The bakery closed after the storm.", "A new bridge opened in March.",
               "The train was late again.", "Prices rose sharply in the autumn.",
               "The museum bought two paintings.", "Snow fell on the mountains overnight.",
               "The lecture ran for three hours.", "Several windows were broken.")

ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kr", "st", "tr", "sh")
VOWELS = ("a", "e", "i", "o", "u", "ai", "ei", "ou")
CODAS = ("", "", "n", "r", "l", "s", "k", "m")
GIVEN_NAMES = ("Anouk", "Bram", "Celia", "Dmitri", "Edda", "Fabio", "Gisela", "Henrik", "Ilse", "Joaquin",
               "Katja", "Lorenzo", "Maren", "Niko", "Odile", "Piet", "Quirin", "Rhea", "Soren", "Tilde")
TITLE_WORDS = ("The", "Lord", "Saint", "Captain", "Doctor", "Master", "Lady", "Sister")
NAME_SHAPES = ("one", "two", "three", "mixed")


@dataclass(frozen=True)
class FactSetSpec:
    name: str
    name_shape: str  # one word | two words | three words (titles) | mixed (hyphens and digits)
    n_relations: int
    relations_per_subject: int
    prompt_length: str  # "short": the phrasings as they are; "long": a clause before the subject
    distractors: bool  # paraphrases start with an unrelated sentence, as CounterFact's do
    records: int = 200
    neighbours: int = 5  # neighbourhood (and attribute) prompts per record
    seed: int = 0


SPECS: tuple[FactSetSpec, ...] = (
    FactSetSpec("one-word-2rel-short", "one", 2, 1, "short", False),
    FactSetSpec("two-word-6rel-long", "two", 6, 2, "long", True),
    FactSetSpec("titles-12rel-short", "three", 12, 3, "short", True),
    FactSetSpec("hyphen-digit-6rel-mixed", "mixed", 6, 2, "long", False),
)


def _word(rng: random.Random, syllables: int) -> str:
    return "".join(rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS) for _ in range(syllables)).title()


def make_name(rng: random.Random, shape: str) -> str:
    """An invented name of the shape asked for."""
    if shape == "one":
        return _word(rng, rng.choice((2, 3)))
    if shape == "two":
        return f"{rng.choice(GIVEN_NAMES)} {_word(rng, rng.choice((2, 3)))}"
    if shape == "three":
        return f"{rng.choice(TITLE_WORDS)} {_word(rng, 2)} {_word(rng, rng.choice((2, 3)))}"
    if shape == "mixed":  # a hyphenated name, or a name with a number (a model, a unit, a ship)
        if rng.random() < 0.5:
            return f"{_word(rng, rng.choice((1, 2)))}-{_word(rng, rng.choice((1, 2)))}"
        return f"{_word(rng, 2)} {rng.randrange(2, 99)}"
    raise ValueError(f"name shape {shape!r}: unknown (choose from {', '.join(NAME_SHAPES)})")


def _phrase(template: str, spec: FactSetSpec, rng: random.Random) -> str:
    """A phrasing in the set's prompt length: long ones get a clause in front (its subject-first phrasings too)."""
    if spec.prompt_length == "short":
        return template
    clause = rng.choice(CLAUSES)
    rest = template if template.startswith("{}") else template[0].lower() + template[1:]
    return f"{clause} {rest}"


@dataclass(frozen=True)
class FactSet:
    spec: FactSetSpec
    records: list[dict[str, Any]]
    truth: dict[tuple[str, str], str]  # (subject, relation id) -> true object, for records and their neighbours


def generate(spec: FactSetSpec) -> FactSet:
    """The set's records; `truth` holds every fact they state, for checks."""
    rng = random.Random(f"{spec.name}/{spec.seed}")
    relation_ids = sorted(RELATIONS)[: spec.n_relations]
    # One prompt phrasing per relation and set (long prompts keep the same clause: CounterFact's rewrite prompt is
    # one per relation), plus the paraphrase phrasings.
    phrasings = {r: tuple(_phrase(t, spec, rng) for t in RELATIONS[r][0]) for r in relation_ids}
    reserved = {w.strip(",:.") for r in relation_ids for t in phrasings[r] for w in t.split()}
    reserved |= {o for r in relation_ids for o in RELATIONS[r][1]}
    used: set[str] = set()

    def fresh_name() -> str:
        while True:
            name = make_name(rng, spec.name_shape)
            if name not in used and not set(name.replace("-", " ").split()) & reserved:
                used.add(name)
                return name

    n_subjects = -(-spec.records // spec.relations_per_subject)
    facts: list[tuple[str, str, str]] = []
    for _ in range(n_subjects):
        subject = fresh_name()
        for relation_id in sorted(rng.sample(relation_ids, spec.relations_per_subject)):
            facts.append((subject, relation_id, rng.choice(RELATIONS[relation_id][1])))
    facts = facts[: spec.records]
    # Neighbours: other entities (not records) holding each (relation, object) a record uses, as CounterFact's.
    holders: dict[tuple[str, str], list[str]] = {}
    truth = {(s, r): o for s, r, o in facts}
    for _, relation_id, obj in facts:
        for key in ((relation_id, obj),):
            while len(holders.setdefault(key, [])) < spec.neighbours:
                name = fresh_name()
                holders[key].append(name)
                truth[(name, relation_id)] = obj
    records = []
    for case_id, (subject, relation_id, target_true) in enumerate(facts):
        objects = RELATIONS[relation_id][1]
        target_new = rng.choice([o for o in objects if o != target_true])
        attribute = holders.get((relation_id, target_new), [])
        if not attribute:  # target_new held by nobody yet: give it holders too (CounterFact's attribute prompts)
            attribute = holders.setdefault((relation_id, target_new), [fresh_name() for _ in range(spec.neighbours)])
            truth.update({(name, relation_id): target_new for name in attribute})
        rewrite, *paraphrases = phrasings[relation_id]
        if spec.distractors:
            paraphrases = [f"{rng.choice(DISTRACTORS)} {p}" for p in paraphrases]
        records.append({
            "case_id": case_id,
            "requested_rewrite": {"prompt": rewrite, "subject": subject, "relation_id": relation_id,
                                  "target_new": {"str": target_new}, "target_true": {"str": target_true}},
            "paraphrase_prompts": [p.format(subject) for p in paraphrases],
            "neighborhood_prompts": [rewrite.format(n) for n in holders[(relation_id, target_true)]],
            "attribute_prompts": [rewrite.format(n) for n in attribute],
            "generation_prompts": [f"{subject} is known for", f"People say that {subject}",
                                   f"{rng.choice(DISTRACTORS)} {subject}"],
        })
    return FactSet(spec, records, truth)


def write_sets(out_dir: Path, specs: tuple[FactSetSpec, ...] = SPECS, records: int | None = None) -> list[Path]:
    """Every set as `out_dir/<name>.json` (`records` caps each set's size), validated by the request reader."""
    from dataclasses import replace

    from editor.readers import read_requests

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for spec in specs:
        fact_set = generate(replace(spec, records=records) if records else spec)
        path = out_dir / f"{spec.name}.json"
        path.write_text(json.dumps(fact_set.records, indent=1, ensure_ascii=False), encoding="utf-8")
        read_requests(path, fmt="counterfact")  # a set the reader refuses is a bug here
        paths.append(path)
    return paths


if __name__ == "__main__":
    import sys

    for written in write_sets(Path(sys.argv[1])):
        print(written)
