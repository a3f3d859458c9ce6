"""Loading a causal LM and finding its editable parts from the modules it actually has.

The engine's math uses the out×in layout `W[d_model, d_ff]` of the MLP output projection ("rewrite module").
GPT-2 stores it as a `Conv1D` whose weight is in×out, so a math column is a stored row: `read_columns` and
`write_columns` hide this so every method works in the math layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from editor.errors import ModelDirectoryError, UnsupportedModelError


@dataclass(frozen=True)
class FamilyLayout:
    family: str
    rewrite_template: str
    block_template: str
    final_norm: str
    unembed_candidates: tuple[str, ...]  # the unembedding's name moved between transformers releases
    # A norm between the rewrite module's output and the residual (Gemma-2/3's post_feedforward_layernorm): then
    # the block's output is not linear in W, so hidden states and z* live at the rewrite module's output, where
    # W's change lands exactly. Families without one keep them at the block's output, as NSE.md states.
    post_mlp_norm_template: str | None = None


LAYOUTS: tuple[FamilyLayout, ...] = (
    # Before Llama: Gemma-3 has Llama's module paths and one more norm, which decides where z* lives.
    FamilyLayout("gemma3", "model.layers.{}.mlp.down_proj", "model.layers.{}", "model.norm", ("lm_head",),
                 "model.layers.{}.post_feedforward_layernorm"),
    FamilyLayout("gpt2", "transformer.h.{}.mlp.c_proj", "transformer.h.{}", "transformer.ln_f", ("lm_head",)),
    FamilyLayout("gptj", "transformer.h.{}.mlp.fc_out", "transformer.h.{}", "transformer.ln_f", ("lm_head",)),
    FamilyLayout(
        "gpt-neox",
        "gpt_neox.layers.{}.mlp.dense_4h_to_h",
        "gpt_neox.layers.{}",
        "gpt_neox.final_layer_norm",
        ("embed_out", "lm_head"),
    ),
    FamilyLayout("llama", "model.layers.{}.mlp.down_proj", "model.layers.{}", "model.norm", ("lm_head",)),
)
SUPPORTED_FAMILIES = "GPT-2, GPT-J, GPT-NeoX, Llama/Mistral/Qwen2, Gemma-3"


def is_conv1d(module: nn.Module) -> bool:
    """transformers' Conv1D (GPT-2 style, weight in×out), recognised by type name: no import ties us to it."""
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf")


@dataclass(frozen=True)
class ArchMap:
    family: str
    n_layers: int
    d_model: int
    d_ff: int
    rewrite_template: str
    block_template: str
    final_norm: str
    unembed: str
    rewrite_is_conv1d: bool
    hidden_is_block_output: bool = True  # False: at the rewrite module's output (a post-MLP norm follows it)

    def hidden_module(self, model: nn.Module, layer: int) -> nn.Module:
        """The module whose output holds h^l and z* (NSE.md's residual stream, or the rewrite output)."""
        return self.block_module(model, layer) if self.hidden_is_block_output else self.rewrite_module(model, layer)

    def rewrite_module(self, model: nn.Module, layer: int) -> nn.Module:
        return model.get_submodule(self.rewrite_template.format(layer))

    def block_module(self, model: nn.Module, layer: int) -> nn.Module:
        return model.get_submodule(self.block_template.format(layer))

    def rewrite_weight_name(self, layer: int) -> str:
        return self.rewrite_template.format(layer) + ".weight"

    def rewrite_weight(self, model: nn.Module, layer: int) -> nn.Parameter:
        return self.rewrite_module(model, layer).weight


def _submodule(model: nn.Module, name: str) -> nn.Module | None:
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None


def find_architecture(model: nn.Module) -> ArchMap:
    """The module map of `model`, found from which module paths exist and their types (never from a name)."""
    for layout in LAYOUTS:
        first_rewrite = _submodule(model, layout.rewrite_template.format(0))
        if first_rewrite is None or _submodule(model, layout.final_norm) is None:
            continue
        unembed = next((n for n in layout.unembed_candidates if _submodule(model, n) is not None), None)
        if unembed is None:
            continue
        has_post_norm = _submodule(model, (layout.post_mlp_norm_template or "{}").format(0)) is not None
        if layout.post_mlp_norm_template is not None and not has_post_norm:
            continue
        conv1d = is_conv1d(first_rewrite)
        if not (conv1d or isinstance(first_rewrite, nn.Linear)):
            continue
        n_layers = 0
        while _submodule(model, layout.block_template.format(n_layers)) is not None:
            n_layers += 1
        weight = first_rewrite.weight
        d_ff, d_model = weight.shape if conv1d else (weight.shape[1], weight.shape[0])
        return ArchMap(
            layout.family,
            n_layers,
            int(d_model),
            int(d_ff),
            layout.rewrite_template,
            layout.block_template,
            layout.final_norm,
            unembed,
            conv1d,
            hidden_is_block_output=layout.post_mlp_norm_template is None,
        )
    raise UnsupportedModelError(
        f"model {type(model).__name__}: unsupported module layout (supported families: {SUPPORTED_FAMILIES})"
    )


def read_columns(weight: torch.Tensor, cols: torch.Tensor, conv1d: bool) -> torch.Tensor:
    """Columns `cols` of the math-layout weight, as [d_model, n] (a copy)."""
    return weight[cols].T.clone() if conv1d else weight[:, cols].clone()


@torch.no_grad()
def write_columns(weight: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, conv1d: bool) -> None:
    """Set columns `cols` of the math-layout weight to `values` [d_model, n], exactly (no arithmetic)."""
    values = values.to(device=weight.device, dtype=weight.dtype)
    cols = cols.to(weight.device)
    if conv1d:
        weight[cols] = values.T
    else:
        weight[:, cols] = values


@dataclass
class LoadedModel:
    model: nn.Module
    tokenizer: object
    arch: ArchMap
    device: torch.device
    dtype: torch.dtype
    path: Path


DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_device(device: str) -> torch.device:
    """`auto`: CUDA when this torch has it, else the CPU; `cuda` on a CPU-only torch is refused in one line."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"--device {device!r}: expected auto, cpu or cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: this torch {torch.__version__} has no CUDA device; "
                         f"use --device cpu or auto")
    return torch.device(device)


def check_dtype(dtype: str) -> torch.dtype:
    if dtype not in DTYPES:
        raise ValueError(f"--dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def check_model_directory(path: str | Path) -> Path:
    """A local Hugging Face directory with safetensors weights, checked before anything loads. A directory whose
    weights exist only as pickles (pytorch_model.bin) is refused: loading a pickle can run code."""
    path = Path(path)
    if not path.exists():
        raise ModelDirectoryError(f"model directory {path}: not found")
    if not path.is_dir():
        raise ModelDirectoryError(f"model directory {path}: not a directory")
    if not (path / "config.json").is_file():
        raise ModelDirectoryError(f"model directory {path}: no config.json (not a Hugging Face model directory)")
    if not any(path.glob("*.safetensors")):
        pickles = sorted(p.name for p in path.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
        if pickles:
            raise ModelDirectoryError(
                f"model directory {path}: weights only as pickle files ({', '.join(pickles[:3])}); editledger "
                f"loads safetensors only: convert them (save_pretrained(..., safe_serialization=True))"
            )
        raise ModelDirectoryError(f"model directory {path}: no *.safetensors weights")
    return path


def load_model(
    path: str | Path, device: str = "auto", dtype: str = "float32", device_map: str | dict | None = None
) -> LoadedModel:
    """A local Hugging Face directory (safetensors only, never the hub), in eval mode with a pad token."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = check_dtype(dtype)
    path = check_model_directory(path)
    target = resolve_device(device) if device_map is None else None
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=torch_dtype, use_safetensors=True, local_files_only=True, device_map=device_map
    )
    if target is not None:
        model.to(target)
    else:
        target = next(model.parameters()).device
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token if tokenizer.eos_token is not None else tokenizer.unk_token
    return LoadedModel(model, tokenizer, find_architecture(model), target, torch_dtype, path)
