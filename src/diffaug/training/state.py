"""Resumable training state: the run fingerprint and the checkpoint folder of one `Trainer.fit`.

A checkpoint is one folder, `<checkpoints>/<name>/`, replaced as a whole (written beside it, then
renamed), so a kill leaves either the previous checkpoint or the new one:

    model.safetensors, optimizer.bin, scheduler.bin, random_states_0.pkl   accelerate's save_state
    (model_1.safetensors, optimizer_1.bin, ...: a task's auxiliary models, e.g. a discriminator)
    sampler.safetensors   the trainer's torch.Generator (every batch draw comes from it)
    best.safetensors      the validation-selected weights so far (tasks with a validation score)
    ema.safetensors       the moving average of the weights and its update count (`ema_decay` > 0)
    trainer.json          step, fingerprint, logged curve points, best step and score

accelerate loads its files with `weights_only=True`; ours are safetensors and JSON.

The fingerprint names everything that determines the run: params, seed, data digest, process
count, precision and the training code. The code enters as its syntax tree without docstrings
(`code_digest`), so editing a comment or a docstring keeps a checkpoint valid, while any change
to what the code does starts training afresh instead of handing back stale weights.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np


log = logging.getLogger(__name__)

TRAINER_FILE = "trainer.json"
SAMPLER_FILE = "sampler.safetensors"
BEST_FILE = "best.safetensors"
EMA_FILE = "ema.safetensors"


def run_fingerprint(*parts: Any) -> str:
    """Hash of JSON-able parts (params dumps, seeds, digests)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def array_digest(*arrays: Any) -> str:
    """Hash of arrays' shapes and bytes (the training data's part of a fingerprint)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a))
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def state_digest(*states: Any) -> str:
    """Hash of weights a training run starts from or reads (state dicts, or modules: their
    `state_dict()`), names included; None entries are skipped. A frozen network whose weights
    change (the generator's VAE under the validator) then invalidates the checkpoint."""
    h = hashlib.sha256()
    for state in states:
        if state is None:
            continue
        state = state.state_dict() if hasattr(state, "state_dict") else state
        for name in sorted(state):
            h.update(name.encode())
            h.update(array_digest(state[name].detach().cpu().float().numpy()).encode())
    return h.hexdigest()[:16]


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def code_digest(*modules: str) -> str:
    """Hash of what these modules' code does: the syntax tree without docstrings, comments or
    line numbers (a comment edit keeps the digest; a changed expression changes it)."""
    h = hashlib.sha256()
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise ValueError(f"module {name} not found")
        tree = _strip_docstrings(ast.parse(Path(spec.origin).read_text(), filename=spec.origin))
        h.update(name.encode())
        h.update(ast.dump(tree, include_attributes=False).encode())
    return h.hexdigest()[:16]


def read_trainer_file(folder: Path) -> dict[str, Any] | None:
    """trainer.json of a checkpoint folder; None when there is none; a corrupt one raises ValueError."""
    path = folder / TRAINER_FILE
    if not folder.exists():
        return None
    if not path.is_file():
        raise ValueError(f"no {TRAINER_FILE}")
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or "step" not in data or "fingerprint" not in data:
        raise ValueError(f"{TRAINER_FILE} lacks step/fingerprint")
    return data


def set_aside(folder: Path, why: str) -> Path:
    """Move an unusable checkpoint out of the way (kept for a look, never resumed) and say so."""
    n = 0
    while (target := folder.with_name(f"{folder.name}.corrupt-{n}")).exists():
        n += 1
    folder.rename(target)
    log.warning("%s: checkpoint unreadable (%s); set aside as %s, training starts over", folder, why, target.name)
    return target


def discard(folder: Path, why: str) -> None:
    log.warning("%s: %s; starting afresh", folder, why)
    shutil.rmtree(folder, ignore_errors=True)


def verify_folder(folder: Path) -> None:
    """Read every file of a checkpoint once (safetensors fully, accelerate's .bin/.pkl with
    weights_only): a truncated or foreign file raises ValueError before any state is loaded."""
    from accelerate.utils import load as accelerate_load
    from safetensors.torch import load_file

    for path in sorted(folder.iterdir()):
        try:
            if path.suffix == ".safetensors":
                load_file(str(path))
            elif path.suffix in (".bin", ".pkl"):
                accelerate_load(str(path), map_location="cpu")
        except Exception as exc:  # safetensors, pickle and zip raise many kinds
            what = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ValueError(f"{path.name}: {what}") from None


class CheckpointWriter:
    """Write a checkpoint folder beside its final place and rename it in (main process renames;
    every process writes its own RNG file through accelerate's save_state)."""

    def __init__(self, accelerator: Any, folder: Path) -> None:
        self.acc, self.folder = accelerator, folder
        self.tmp = folder.with_name(f".{folder.name}.writing")

    def __enter__(self) -> Path:
        if self.acc.is_main_process:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp.mkdir(parents=True)
        self.acc.wait_for_everyone()
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        self.acc.wait_for_everyone()
        if not self.acc.is_main_process:
            return
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        old = self.folder.with_name(f".{self.folder.name}.old-{os.getpid()}")
        if self.folder.exists():
            self.folder.rename(old)
        self.tmp.rename(self.folder)
        shutil.rmtree(old, ignore_errors=True)
