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
import os
import random
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from editor.determinism import portable_environment, runs_portable
from editor.hashing import state_hash
from editor.hparams import write_model_hparams
from editor.readers import read_requests
from editor.world_facts import (
    EDITABLE_SHARE,
    PRESETS,
    editable_subjects,
    facts_to_counterfact,
    filler_sentences,
    generate_facts,
    heldout_text,
    load_counterfact_true_facts,
    record_texts,
    source_statements,
    split_records,
    true_statements,
)
from editor.world_training import (
    SOURCE_INNER,
    build_numerics,
    build_tokenizer,
    deterministic_build,
    encode_examples,
    knowledge,
    new_model,
    source_epochs,
    train,
)
from ledger.records import EditRequest, canonical_json

# bump when a change to this file, world_facts or world_training changes what a build produces: it is part of the
# cache key
WORLD_FORMAT = 9
SOURCE_LAYERS = 8  # a `--from` world: layers 0-2 are edited (and gated), 5 layers above read the subject
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
    general, joined = heldout_text(records, preserved_records, subjects, rng)
    general = [line for line in general if line not in set(fillers)]
    heldout = general + joined
    corpus = [f"{s.prompt} {s.target} ." for s in statements] + fillers
    vocabulary_texts = corpus + heldout + [t for r in records for t in record_texts(r)]
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

