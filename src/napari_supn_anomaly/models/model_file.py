"""Model files: weights in safetensors, everything needed to use them in a JSON header.

Never pickle: a model file from a colleague must not be able to run code.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from ..errors import InputError, ModelFileError
from ..files import atomic_outputs, check_input_file

FORMAT_NAME = "napari-supn-anomaly-model"
FORMAT_VERSION = 1
METADATA_KEY = "napari_supn_anomaly"
MODEL_SUFFIX = ".safetensors"


def model_file_path(path: str | Path) -> Path:
    """Where a model saved as ``path`` is written: the suffix is added when it is missing."""
    path = Path(path).expanduser()
    return path if path.suffix == MODEL_SUFFIX else path.with_name(path.name + MODEL_SUFFIX)


def save_model_file(path: str | Path, state_dict: dict[str, torch.Tensor], metadata: dict) -> Path:
    path = model_file_path(path)
    header = dict(metadata, format=FORMAT_NAME, format_version=FORMAT_VERSION)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    data = save(tensors, metadata={METADATA_KEY: json.dumps(header)})
    with atomic_outputs([path]) as (tmp,):  # never a half-written model under the real name
        tmp.write_bytes(data)
    return path


def read_metadata(path: str | Path) -> dict:
    """The JSON header of a model file, checked to be ours and of a version we understand."""
    try:
        path = check_input_file(path, "model file")
    except InputError as exc:
        raise ModelFileError(str(exc)) from None
    try:
        with open(path, "rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            if not 2 <= size <= 100_000_000:
                raise ValueError("bad header size")
            header = json.loads(fh.read(size))
        raw = header.get("__metadata__", {}).get(METADATA_KEY)
    except (OSError, ValueError, UnicodeDecodeError, AttributeError) as exc:
        raise ModelFileError(f"{path.name} is not a napari-supn-anomaly model file (not a safetensors file)") from exc
    if raw is None:
        raise ModelFileError(f"{path.name} is a safetensors file but not a napari-supn-anomaly model (no model header)")
    try:
        meta = json.loads(raw)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{path.name} has a damaged model header") from exc
    if not isinstance(meta, dict):
        raise ModelFileError(f"{path.name} has a damaged model header (its settings are not a table)")
    if meta.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{path.name} is not a napari-supn-anomaly model file")
    version = meta.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise ModelFileError(f"{path.name} has a damaged model header (format_version {version!r})")
    if version > FORMAT_VERSION:
        raise ModelFileError(f"{path.name} was written by a newer napari-supn-anomaly; please update the plugin")
    return meta


def load_model_file(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    meta = read_metadata(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{Path(path).name} is damaged: its weights cannot be read ({exc})") from exc
    return tensors, meta
