"""Saved models: a folder with ``config.json`` and safetensors files. Loading never unpickles.

Atomicity: tensors go to a new file ``<name>-<token>.safetensors``; then ``config.json``, which
names those files and their SHA-256, is written to a temporary file and renamed over the old one
(the commit point); only then are files no longer named removed. A kill at any moment leaves a
``config.json`` that names complete files, so the last good checkpoint survives. A file whose hash
does not match, or that cannot be parsed, raises ``CheckpointError`` instead of loading garbage.

Nested state (optimizer state, training history) is split into JSON and tensors by ``flatten``:
each tensor is replaced by ``{"__tensor__": key}``.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .errors import CheckpointError

FORMAT = "genmodels"
VERSION = 1
CONFIG = "config.json"


def flatten(obj: Any, tensors: dict[str, torch.Tensor], prefix: str = "t") -> Any:
    """Replace every tensor inside ``obj`` by a reference, collecting the tensors."""
    if isinstance(obj, torch.Tensor):
        key = f"{prefix}.{len(tensors)}"
        tensors[key] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        if any(not isinstance(k, (str, int)) for k in obj):
            raise TypeError("checkpoint dict keys must be str or int")
        # int keys (optimizer state) survive JSON as strings: record them
        return {"__dict__": [[k, flatten(v, tensors, prefix)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [flatten(v, tensors, prefix) for v in obj]
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    raise TypeError(f"cannot checkpoint a {type(obj).__name__}")


def unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__dict__" in obj:
            return {k: unflatten(v, tensors) for k, v in obj["__dict__"]}
        return {k: unflatten(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [unflatten(v, tensors) for v in obj]
    return obj


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(path: str | os.PathLike, config: dict[str, Any], files: dict[str, dict[str, torch.Tensor]]) -> Path:
    """Write ``files`` (name -> tensors) and ``config`` into the folder ``path``, atomically."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise CheckpointError(f"{folder} exists and is not a folder; choose another path")
    folder.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(4)
    manifest = {}
    for name, tensors in files.items():
        data = st_save({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
        fname = f"{name}-{token}.safetensors"
        _write_atomic(folder / fname, data)
        manifest[name] = {"file": fname, "sha256": hashlib.sha256(data).hexdigest()}
    full = {"format": FORMAT, "version": VERSION, **config, "files": manifest}
    _write_atomic(folder / CONFIG, json.dumps(full, indent=2, default=_json_default).encode())
    keep = {m["file"] for m in manifest.values()}
    for old in folder.glob("*.safetensors"):       # files of earlier checkpoints
        if old.name not in keep:
            old.unlink(missing_ok=True)
    return folder


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"{type(o).__name__} is not JSON-serialisable")


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    folder = Path(path)
    if not folder.exists():
        raise CheckpointError(f"no saved model at {folder}: the folder does not exist")
    cfg_path = folder / CONFIG if folder.is_dir() else folder
    if not cfg_path.is_file():
        raise CheckpointError(f"{folder} is not a saved genmodels model (no {CONFIG}); give the folder that "
                              "Model.save or `genmodels fit --out` wrote")
    try:
        config = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{cfg_path} is corrupt or truncated ({e}); re-save or refit the model") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"{cfg_path} is not a genmodels model config")
    if config.get("version", 0) > VERSION:
        raise CheckpointError(f"{cfg_path} was written by a newer genmodels (format {config['version']}); upgrade")
    return config


def load(path: str | os.PathLike, name: str) -> dict[str, torch.Tensor]:
    """The tensors of file ``name`` of the checkpoint at ``path``, checked against their hash."""
    folder = Path(path)
    config = read_config(folder)
    entry = config.get("files", {}).get(name)
    if entry is None:
        raise CheckpointError(f"the saved model at {folder} has no {name!r} tensors")
    f = folder / entry["file"]
    try:
        data = f.read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read {f}: {e}; the saved model is incomplete") from None
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise CheckpointError(f"{f} is corrupt or truncated (its checksum does not match config.json); "
                              "re-save or refit the model")
    try:
        return st_load(data)
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"{f} cannot be parsed as safetensors: {e}") from None
