"""Resumable training checkpoints of `finetune_generator` (a `persist: true` DVC out).

One folder `<ckpt_dir>/state/`, replaced atomically: model weights as safetensors
(`<name>.safetensors`), optimizer / lr-scheduler / RNG states in `states.pt` (tensors, numbers and
lists only, so `torch.load(weights_only=True)` reads it), and `progress.json` (phase, step within
the phase, VAE scaling factor, run fingerprint). A checkpoint whose fingerprint (params + data)
differs from the current run is ignored and removed, so changed params never resume stale state.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from diffaug.io import atomic_dir

STATE = "state"


def run_fingerprint(*parts: Any) -> str:
    """Hash of everything that determines the training run (params JSON, seed, data digests)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def source_digest(*modules: str) -> str:
    """Hash of the source files of these modules: a checkpoint written by other training code
    (DVC reran the stage because a code dependency changed) must not be resumed, least of all a
    finished one, which would hand back the old weights without training."""
    import importlib.util

    h = hashlib.sha256()
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise ValueError(f"module {name} not found")
        h.update(name.encode())
        h.update(Path(spec.origin).read_bytes())
    return h.hexdigest()[:16]


def array_digest(*arrays: Any) -> str:
    h = hashlib.sha256()
    for a in arrays:
        t = torch.as_tensor(a).contiguous()
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


def save_checkpoint(
    ckpt_dir: str | Path,
    models: dict[str, torch.nn.Module],
    states: dict[str, Any],
    progress: dict[str, Any],
) -> None:
    """Write the checkpoint (models → safetensors; `states` → states.pt; `progress` → JSON)."""
    ckpt_dir = Path(ckpt_dir)
    with atomic_dir(ckpt_dir / STATE) as tmp:
        for name, model in models.items():
            sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
            save_file(sd, str(tmp / f"{name}.safetensors"))
        torch.save(states, tmp / "states.pt")
        (tmp / "progress.json").write_text(json.dumps(progress, indent=2, sort_keys=True) + "\n")


def load_checkpoint(ckpt_dir: str | Path, fingerprint: str) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any], dict[str, Any]] | None:
    """(model state dicts, states, progress) of the last checkpoint of this run, else None."""
    folder = Path(ckpt_dir) / STATE
    prog_file = folder / "progress.json"
    if not prog_file.is_file():
        return None
    try:
        progress = json.loads(prog_file.read_text())
    except json.JSONDecodeError:
        progress = {}
    if progress.get("fingerprint") != fingerprint:
        shutil.rmtree(folder, ignore_errors=True)  # another run's state: start fresh
        return None
    models = {p.stem: load_file(str(p)) for p in sorted(folder.glob("*.safetensors"))}
    states = torch.load(folder / "states.pt", weights_only=True)
    return models, states, progress
