"""Hyperparameters of a round, the published presets, and defaults derived for any model.

How `derive_hparams` chooses defaults for a model it has never seen (the published values only fit the
models they were tuned on; NSE.md: "alpha and upper_bound are in units of the residual norm of that model"):

- layers: models of up to 6 blocks edit every block but the last (the last one has nothing after it to carry
  the change to the output). Deeper models edit a window of lower-middle blocks ending at 30% of the depth,
  `max(2, min(5, n_layers // 6))` blocks wide (GPT-J 28 blocks -> 4..8, as published; GPT2-XL 48 -> 10..14).
  ROME edits one block: the last of that window. z_layer is the last edited block.
- residual norm `ρ`: the mean norm of block z_layer's output over the tokens (all but the first, whose norm is
  atypical) of a few plain sentences, measured on the loaded model.
- alpha = 0.05 ρ, upper_bound = 3 ρ: a request closer than 5% of a typical hidden state to its target is done;
  one farther than three hidden states away is an outlier (z* itself is at most 0.75 ρ from h0).
- v_lr = 0.1 ρ / sqrt(d_model): Adam moves each coordinate by about v_lr per step, so in 20 steps δ can reach
  the clamp radius 0.75 ρ whatever the model's scale.
- λ (mom2_update_weight) = 0.3 d_ff: C0 is a per-token mean, so λ counts how many "virtual tokens" of
  preservation stand against each edit key. Chosen on 4 tiny worlds (seeds 0-3) x 3 CPU kernel configurations
  (`python -m benchmarks.spread`, benchmarks/results/spread*.json; kernels changed no score, worlds did).
  Min / median / max over the worlds at 0.03, 0.1, 0.3, 1.0 d_ff:
  one round of 8, NSE 0.75/0.94/1.0, 0.88/0.94/1.0, 0.75/0.94/1.0, 0.63/0.94/1.0; MEMIT 0.38/0.69/0.88,
  0.38/0.63/0.88, 0.38/0.63/0.88, 0.38/0.56/0.88; first of five NSE rounds of 8 0.63/0.69/0.88, 0.63/0.75/1.0,
  0.63/0.75/0.88, 0.63/0.75/1.0; three NSE rounds of 4 (teacher forced) median 1.0, 0.96, 1.0, 0.96. Across two
  orders of magnitude λ moves each score by at most one request of eight, so 0.3 d_ff stays (1.5 d_ff, measured
  on the first world, held NSE edits back: 0.75). What limits MEMIT here is not λ: after its one pass the
  residual at z_layer is still about half of what it was (seed 2: 242-329 -> 115-235, at λ = 5 as at 154), since
  the key it solves for averages the context templates while the bare prompt's key differs; NSE's further
  passes close it.
- clamp_norm_factor = 3.0 (published 0.75): a small model has few blocks after z_layer to carry δ, and on the
  fact worlds a δ within 0.75 ρ could not make the new object the argmax (efficacy 0.25-0.75); 3 ρ does.
- AlphaEdit's null space: eigenvalues of C0 below 2% of the largest (`nullspace_relative`). The published
  absolute 2e-2 assumes GPT-scale statistics; on a small model's full-rank C0 it leaves no null space at all.
- neuron_rule "reach" (default): NSE's neurons are the smallest set carrying at least p of the keys' activation
  mass, as the paper states it, so p is a guarantee about what the update can reach; "under" keeps the reference
  code's rule (the largest set within p, one neuron fewer; measured on the reference's own round, that neuron
  moves ΔW by 5-8%). Recorded with every version like every other field (`edit --set neuron_rule="under"`).
- neuron_threshold p = 0.8 for NSE (the published GPT-J value; 1.0 elsewhere), max_iterations 3, 25 gradient
  steps (GPT-J/Llama), v_weight_decay 0.5, kl_factor 0.0625, AlphaEdit L2 10, as published.
- norm_anchor (off by default; NAS, arXiv 2602.02543): each request's δ = z* − h0 is rescaled to one anchor norm,
  and a request whose ‖δ‖ is over twice the anchor is skipped (outcome status "skipped"). The anchor,
  norm_anchor_norm, is the mean ‖δ‖ of pilot edits on the original model: unless set, the first anchored round
  measures it on its own requests (z* on the original weights) and records it with its hyperparameters, so
  later rounds, later sessions (which start from the branch's recorded values) and replays all use that number.
- rewind (NSE only, on by default): z* is optimised on the original weights, so an edit's target does not drift
  with the edits before it (NSE's weights rewinding); `--set rewind=false` optimises it on the round's starting
  weights as MEMIT does: the paper's "without rewinding" ablation, recorded with every version like the rest.
Any field can be overridden: `derive_hparams(loaded, "nse", mom2_update_weight=500.0)`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from editor.activations import typical_residual_norm
from editor.errors import HparamsError

# Relative ridge of the solves: bounds the rounding noise a singular M (C0 from fewer tokens than d_ff) amplifies,
# and moves well-posed solves by about this much. 1e-4, not 1e-6: a float32 C0 from fewer tokens than d_ff is also
# indefinite, down to -8e-5 of its mean diagonal, which 1e-6 does not lift (docs/design-notes.md, "A singular C0").
SOLVE_RIDGE = 1e-4


@dataclass
class EditHparams:
    layers: list[int]
    v_num_grad_steps: int = 20
    v_lr: float = 0.5
    v_loss_layer: int | None = None  # None: the model's last block (the loss is on the model's output)
    v_weight_decay: float = 0.5
    clamp_norm_factor: float = 0.75
    kl_factor: float = 0.0625
    mom2_update_weight: float = 10000.0  # λ
    mom2_n_samples: int = 100000
    mom2_dtype: str = "float32"
    alpha: float = 35.0
    upper_bound: float = 150.0
    neuron_threshold: float = 1.0  # p; >= 1 selects every neuron
    neuron_rule: str = "reach"  # NSE's set for p: "reach" (smallest reaching p, the paper) or "under" (the reference)
    max_iterations: int = 3
    solve_ridge: float = SOLVE_RIDGE  # M + ridge·mean(diag M)·I in the NSE/MEMIT/ROME solves (engine.with_ridge)
    nullspace_threshold: float = 2e-2  # AlphaEdit
    nullspace_relative: bool = False  # threshold as a fraction of C0's largest eigenvalue (derived defaults)
    L2: float = 10.0  # AlphaEdit μ
    norm_anchor: bool = False  # NAS: every δ = z* − h0 rescaled to the anchor norm; δ over twice it: skipped
    norm_anchor_norm: float | None = None  # the anchor ‖δ‖; None: the first anchored round measures it (pilot)
    rewind: bool = True  # NSE: z* on the original weights; false: on the round's starting ones (the ablation)
    template_seed: int = 0
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)  # method-specific values, recorded with the rest

    @property
    def z_layer(self) -> int:
        return self.layers[-1]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EditHparams:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise HparamsError(f"hparams: unknown field(s) {', '.join(unknown)}")
        if "layers" not in data:
            raise HparamsError("hparams: missing field layers")
        values = dict(data)
        values["layers"] = [int(layer) for layer in values["layers"]]
        values["extra"] = dict(values.get("extra") or {})
        # hparams recorded before the ridge existed were solved without it: a replay must do the same
        values.setdefault("solve_ridge", 0.0)
        return cls(**values)


NEURON_RULES = ("reach", "under")
_INTEGERS = ("v_num_grad_steps", "mom2_n_samples", "max_iterations", "template_seed", "seed")
_POSITIVE_INTEGERS = ("v_num_grad_steps", "mom2_n_samples", "max_iterations")
_NUMBERS = ("v_lr", "v_weight_decay", "clamp_norm_factor", "kl_factor", "mom2_update_weight", "alpha", "upper_bound",
            "neuron_threshold", "nullspace_threshold", "L2", "solve_ridge")


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """`--set KEY=VALUE` items as a dict; VALUE is JSON where it parses (numbers, lists, true), else a string."""
    known = {f.name for f in fields(EditHparams)}
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise HparamsError(f"--set {item!r}: expected KEY=VALUE")
        if key not in known:
            raise HparamsError(f"--set {key}: unknown hyperparameter (known: {', '.join(sorted(known))})")
        try:
            overrides[key] = json.loads(text)
        except json.JSONDecodeError:
            overrides[key] = text
    return overrides


def check_overrides(overrides: dict[str, Any], n_layers: int | None = None) -> dict[str, Any]:
    """`--set` values checked against each field's type (and the model's depth, when known) before any model
    loads; the error names the option. Returns them with numbers as floats where the field is a float."""
    known = {f.name for f in fields(EditHparams)}
    checked: dict[str, Any] = {}
    for key, value in overrides.items():
        where = f"--set {key}={json.dumps(value)}"
        if key not in known:
            raise HparamsError(f"--set {key}: unknown hyperparameter (known: {', '.join(sorted(known))})")
        is_int = isinstance(value, int) and not isinstance(value, bool)
        if key == "layers":
            if not isinstance(value, list) or not value or not all(
                    isinstance(x, int) and not isinstance(x, bool) for x in value):
                raise HparamsError(f"{where}: expected a non-empty list of block indices, e.g. [1,2]")
            if value != sorted(set(value)):
                raise HparamsError(f"{where}: block indices must be ascending without repeats")
            if n_layers is not None and not all(0 <= x < n_layers for x in value):
                raise HparamsError(f"{where}: the model has blocks 0..{n_layers - 1}")
        elif key == "v_loss_layer":
            if value is not None and not is_int:
                raise HparamsError(f"{where}: expected a block index or null")
        elif key in _INTEGERS:
            if not is_int or (key in _POSITIVE_INTEGERS and value < 1):
                raise HparamsError(f"{where}: expected a {'positive ' if key in _POSITIVE_INTEGERS else ''}integer")
        elif key in _NUMBERS:
            if not (is_int or isinstance(value, float)) or not math.isfinite(value):
                raise HparamsError(f"{where}: expected a number")
            value = float(value)
        elif key == "norm_anchor_norm":
            if value is not None and (not (is_int or isinstance(value, float)) or not 0 < value < math.inf):
                raise HparamsError(f"{where}: expected a positive number or null (measured on the first round)")
            value = None if value is None else float(value)
        elif key in ("nullspace_relative", "norm_anchor", "rewind"):
            if not isinstance(value, bool):
                raise HparamsError(f"{where}: expected true or false")
        elif key == "neuron_rule":
            if value not in NEURON_RULES:
                raise HparamsError(f"{where}: expected one of {', '.join(NEURON_RULES)}")
        elif key == "mom2_dtype":
            if value not in ("float32", "float16", "bfloat16"):
                raise HparamsError(f"{where}: expected float32, float16 or bfloat16")
        elif key == "extra" and not isinstance(value, dict):
            raise HparamsError(f"{where}: expected an object")
        checked[key] = value
    return checked


_SHARED = dict(
    v_weight_decay=0.5, clamp_norm_factor=0.75, kl_factor=0.0625, max_iterations=3, mom2_n_samples=100000
)
PRESETS: dict[str, EditHparams] = {
    "gpt2-xl": EditHparams(
        layers=[13, 14, 15, 16, 17],
        v_num_grad_steps=20,
        v_lr=0.5,
        mom2_update_weight=10000.0,
        alpha=35.0,
        upper_bound=150.0,
        neuron_threshold=1.0,
        **_SHARED,
    ),
    "gpt-j-6b": EditHparams(
        layers=[3, 4, 5, 6, 7, 8],
        v_num_grad_steps=25,
        v_lr=0.5,
        mom2_update_weight=15000.0,
        alpha=15.0,
        upper_bound=100.0,
        neuron_threshold=0.8,
        **_SHARED,
    ),
    "llama3-8b": EditHparams(
        layers=[4, 5, 6, 7, 8],
        v_num_grad_steps=25,
        v_lr=0.1,
        mom2_update_weight=15000.0,
        alpha=2.5,
        upper_bound=50.0,
        neuron_threshold=1.0,
        **_SHARED,
    ),
}
# Published per-method differences from the NSE values above.
PRESET_METHOD_OVERRIDES: dict[tuple[str, str], dict[str, Any]] = {
    ("gpt2-xl", "memit"): {"mom2_update_weight": 20000.0},
    ("gpt2-xl", "memit-cp"): {"mom2_update_weight": 20000.0},
}


# Real models: measured settings applied over `derive_hparams`' values (which keep the ρ-relative alpha, bounds and
# learning rate). The layers come from causal tracing on the model (editor/tracing.py, `editledger trace`) and the
# speed settings from timing the demo's rounds; the measurements are in docs/design-notes.md ("Real models").
MODEL_PRESETS: dict[str, dict[str, Any]] = {
    # traced: restoring the subject's last-token state helps most at blocks 9-12 of 30 (32 facts it ranks first)
    "smollm2-135m": {"layers": [10, 11, 12], "v_num_grad_steps": 10, "extra": {"context_templates": 2}},
    # traced over 525 facts it knows: the effect stays within 90% of its peak (block 3) through block 6, 0.88 of it
    # at 7-8, and falls to a fifth of it after block 11 (of 18). 15 z* steps, not 10: on a round of 20 facts, 10
    # steps reached efficacy 0.85, 15 and 20 steps 1.0 (specificity 0.84, 0.77, 0.73)
    "gemma3-270m": {"layers": [4, 5, 6], "v_num_grad_steps": 15, "extra": {"context_templates": 2}},
}


def preset_overrides(name: str, method: str = "nse") -> dict[str, Any]:
    """A real model's measured settings, as `--set` overrides (ROME: the last of the layers)."""
    if name not in MODEL_PRESETS:
        raise HparamsError(f"preset {name!r}: unknown (real-model presets: {', '.join(MODEL_PRESETS)})")
    values = dict(MODEL_PRESETS[name])
    if method == "rome":
        values["layers"] = values["layers"][-1:]
    return values


def preset(name: str, method: str = "nse") -> EditHparams:
    if name not in PRESETS:
        raise HparamsError(f"preset {name!r}: unknown (choose from {', '.join(PRESETS)})")
    values = {**PRESETS[name].to_dict(), **PRESET_METHOD_OVERRIDES.get((name, method), {})}
    if method == "rome":
        values["layers"] = values["layers"][-1:]
    return EditHparams.from_dict(values)


# In a model directory: the hyperparameters editing that model needs (a `--from` fact world writes it), read and
# recorded with the base model when it is added, so every edit of it starts from them without `--set` lines.
MODEL_HPARAMS_FILE = "editledger_hparams.json"


def read_model_hparams(model_dir: Path, n_layers: int | None) -> dict[str, Any]:
    """The checked `edit_hparams` of a model directory's MODEL_HPARAMS_FILE; {} when it has none."""
    path = Path(model_dir) / MODEL_HPARAMS_FILE
    if not path.is_file():
        return {}
    try:
        values = json.loads(path.read_text(encoding="utf-8"))["edit_hparams"]
        if not isinstance(values, dict):
            raise TypeError("edit_hparams is not an object")
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise HparamsError(f"{path}: unreadable ({error})") from None
    try:
        return check_overrides(values, n_layers)
    except HparamsError as error:
        raise HparamsError(f"{path}: {error}") from None


def write_model_hparams(model_dir: Path, values: dict[str, Any]) -> None:
    (Path(model_dir) / MODEL_HPARAMS_FILE).write_text(json.dumps({"edit_hparams": values}, indent=1),
                                                      encoding="utf-8")


def default_layers(n_layers: int) -> list[int]:
    if n_layers <= 6:
        return list(range(max(1, n_layers - 1)))
    width = max(2, min(5, n_layers // 6))
    end = max(width - 1, round(0.3 * n_layers))
    return list(range(end - width + 1, end + 1))


def derive_hparams(loaded: Any, method: str, **overrides: Any) -> EditHparams:
    """Defaults for any model (see the module docstring for the reasoning), then `overrides`."""
    arch = loaded.arch
    layers = [int(x) for x in overrides.get("layers", default_layers(arch.n_layers))]
    if method == "rome" and "layers" not in overrides:
        layers = [layers[len(layers) // 2]]
    rho = typical_residual_norm(loaded, layers[-1])
    values: dict[str, Any] = {
        "layers": layers,
        "v_num_grad_steps": 25,
        "v_lr": round(0.1 * rho / math.sqrt(arch.d_model), 6),
        "mom2_update_weight": float(round(0.3 * arch.d_ff)),
        "clamp_norm_factor": 3.0,
        "nullspace_relative": True,
        "alpha": round(0.05 * rho, 6),
        "upper_bound": round(3.0 * rho, 6),
        "neuron_threshold": 0.8 if method == "nse" else 1.0,
        "solve_ridge": SOLVE_RIDGE,
    }
    values.update(overrides)
    return EditHparams.from_dict(values)
