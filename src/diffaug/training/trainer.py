"""`Trainer.fit(task)`: the training loop every network of the pipeline goes through.

A `Task` supplies the model, a batch draw and the losses; the trainer owns the rest:
- the `Accelerator`, built from the stage's `Runtime` (device, mixed precision, processes);
- AdamW and a warmup + cosine schedule ending at `min_lr_ratio × lr` (transformers'
  `get_cosine_with_min_lr_schedule_with_warmup`; `min_lr_ratio: 0` is diffusers' cosine);
- gradient accumulation (`accelerator.accumulate`) and gradient-norm clipping;
- validation every `eval_every` steps when the task scores one: the best weights by the task's
  score are the run's model (`FitResult.best_step`), unless its `select_key` is None (the scores
  are logged, the last weights kept);
- optionally (`ema_decay` > 0) an exponential moving average of the weights, batch-norm statistics
  included (torch's `AveragedModel`), updated after every optimiser step: it is what is validated
  and what the run keeps, the raw weights only what the optimiser moves;
- checkpoints every `checkpoint_every` steps (`accelerator.save_state` + the trainer's sampler,
  curves and best weights; `diffaug.training.state`) and resume from them: a killed run resumed
  reaches the same weights as an unbroken one, a finished one is loaded instead of retrained;
- dvclive curves (`Curves`) that a resume redraws in full.

Every random draw of the loop comes from one CPU `torch.Generator` (`Task.batch` gets it), seeded
by the caller and checkpointed, so a run is reproducible whatever the number of processes.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from diffaug.io import load_weights_file
from diffaug.progress import note, track
from diffaug.runtime import Runtime
from diffaug.training.curves import Curves
from diffaug.training.schedule import Schedule
from diffaug.training.state import (
    BEST_FILE,
    EMA_FILE,
    SAMPLER_FILE,
    TRAINER_FILE,
    CheckpointWriter,
    discard,
    read_trainer_file,
    set_aside,
    verify_folder,
)


class Task(Protocol):
    """What a network brings to the trainer.

    `model` is trained (accelerate wraps it; `losses` receives the wrapped one so DDP syncs);
    `parameters()` the tensors the optimiser updates; `batch(step, generator)` draws one
    micro-batch on the CPU from the trainer's generator; `losses(model, batch)` returns named
    scalars, of which "loss" is minimised. Optional: `validate(model) -> dict` with the score
    named by `select_key` (higher is better; None: logged, not selected on), and `aux_models` /
    `aux_optimizers` that the task steps itself (a GAN discriminator) and the checkpoint must carry.
    """

    model: nn.Module

    def parameters(self) -> list[nn.Parameter]: ...

    def batch(self, step: int, generator: torch.Generator) -> Any: ...

    def losses(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]: ...


class TrainingStopped(Exception):
    """`stop_after` optimiser steps ran in this call (how the tests simulate a kill)."""


@dataclass
class FitResult:
    steps: int  # optimiser steps of the schedule
    steps_run: int  # optimiser steps run in this call (0 when a finished checkpoint was loaded)
    resumed_from: int  # step the call started from (0 = fresh)
    best_step: int | None = None  # validation-selected step (None: no validation)
    best_score: float | None = None
    last: dict[str, float] = field(default_factory=dict)  # last logged window means
    seconds: float = 0.0


def build_optimizer(params, s: Schedule) -> torch.optim.AdamW:
    # fused=None, not False, when off: torch then picks its default (foreach) kernel
    return torch.optim.AdamW(params, lr=s.lr, betas=tuple(s.betas), weight_decay=s.weight_decay,
                             fused=True if s.fused else None)


def build_scheduler(opt: torch.optim.Optimizer, s: Schedule):
    from transformers.optimization import get_cosine_with_min_lr_schedule_with_warmup

    return get_cosine_with_min_lr_schedule_with_warmup(opt, s.warmup_steps, s.steps, min_lr_rate=s.min_lr_ratio)


class Trainer:
    """Runs tasks; one instance per network (or phase) with its own checkpoint folder."""

    def __init__(self, runtime: Runtime, schedule: Schedule, name: str, fingerprint: str,
                 checkpoints: str | Path | None = None, curves: Curves | None = None,
                 curve_prefix: str = "", step_offset: int = 0, seed: int = 0,
                 stop_after: int | None = None, description: str | None = None) -> None:
        self.runtime, self.s, self.name, self.fingerprint = runtime, schedule, name, fingerprint
        self.folder = Path(checkpoints) / name if checkpoints is not None else None
        self.curves = curves if curves is not None else Curves(None)
        self.prefix, self.offset, self.seed = curve_prefix, step_offset, seed
        self.stop_after = stop_after
        self.description = description or name

    # -------------------------------------------------------------------------------- resume
    def _resume_info(self) -> dict[str, Any] | None:
        """trainer.json of a usable checkpoint of this very run, else None (a foreign one is
        removed, an unreadable one set aside; both with a warning)."""
        if self.folder is None:
            return None
        try:
            info = read_trainer_file(self.folder)
            if info is not None and info["fingerprint"] == self.fingerprint:
                verify_folder(self.folder)  # every file readable before any state is touched
        except (OSError, ValueError) as exc:
            set_aside(self.folder, str(exc).splitlines()[0])
            return None
        if info is not None and info["fingerprint"] != self.fingerprint:
            discard(self.folder, "checkpoint written by other params, data or training code")
            return None
        return info

    def _save(self, acc, step: int, sampler: torch.Generator, best: dict | None, best_step, best_score,
              window: dict[str, list[float]], last: dict[str, float], ema: nn.Module | None = None) -> None:
        from safetensors.torch import save_file

        with CheckpointWriter(acc, self.folder) as tmp:
            acc.save_state(str(tmp))
            if acc.is_main_process:
                save_file({"state": sampler.get_state()}, str(tmp / SAMPLER_FILE))
                if best is not None:
                    save_file(best, str(tmp / BEST_FILE))
                if ema is not None:
                    save_file({k: v.detach().cpu().contiguous() for k, v in ema.state_dict().items()}, str(tmp / EMA_FILE))
                (tmp / TRAINER_FILE).write_text(json.dumps({
                    "step": step, "steps": self.s.steps, "fingerprint": self.fingerprint,
                    "best_step": best_step, "best_score": best_score, "points": self.curves.points,
                    # losses since the last curve point: a resumed run logs the same window means
                    "window": window,
                    # the last logged window means: a finished run loaded reports what it reported
                    "last": last,
                }, indent=1, sort_keys=True))

    # ---------------------------------------------------------------------------------- loop
    def fit(self, task: Task) -> FitResult:
        from accelerate import Accelerator

        t0 = time.perf_counter()
        s = self.s
        acc = Accelerator(cpu=self.runtime.device.type != "cuda", mixed_precision=self.runtime.mixed_precision,
                          gradient_accumulation_steps=s.grad_accum, step_scheduler_with_optimizer=False)
        params = list(task.parameters())
        opt = build_optimizer(params, s)
        sched = build_scheduler(opt, s)
        aux_m, aux_o = list(getattr(task, "aux_models", [])), list(getattr(task, "aux_optimizers", []))
        prepared = acc.prepare(task.model, opt, sched, *aux_m, *aux_o)
        model, opt, sched = prepared[:3]
        if aux_m or aux_o:
            task.aux_models = list(prepared[3:3 + len(aux_m)])
            task.aux_optimizers = list(prepared[3 + len(aux_m):])
        sampler = torch.Generator().manual_seed(self.seed)
        ema = _moving_average(acc.unwrap_model(model), s.ema_decay)
        kept = (lambda: ema.module) if ema is not None else (lambda: acc.unwrap_model(model))  # what is validated and kept
        validate: Callable | None = getattr(task, "validate", None) if s.eval_every > 0 else None
        select_key = getattr(task, "select_key", "score")

        start, best, best_step, best_score = 0, None, None, None
        window: dict[str, list[float]] = {}
        last: dict[str, float] = {}
        info = self._resume_info()
        if info is not None:
            acc.load_state(str(self.folder))
            sampler.set_state(load_weights_file(self.folder / SAMPLER_FILE)["state"])
            if (self.folder / BEST_FILE).is_file():
                best = load_weights_file(self.folder / BEST_FILE)
            if ema is not None:
                ema.load_state_dict(load_weights_file(self.folder / EMA_FILE))
            start, best_step, best_score = int(info["step"]), info.get("best_step"), info.get("best_score")
            # the checkpoint's points hold those of earlier fits logging into these curves too
            self.curves.restore(info["points"])
            window = {k: list(v) for k, v in info.get("window", {}).items()}
            last = dict(info.get("last", {}))
            if start < s.steps:
                note(f"{self.description}: resumed from step {start} of {s.steps}")

        steps_run = 0
        model.train()
        todo = range(start, s.steps)
        for step in track(todo, self.description) if acc.is_main_process else todo:
            if self.stop_after is not None and steps_run >= self.stop_after:
                raise TrainingStopped(self.name)
            for _ in range(s.grad_accum):
                batch = task.batch(step, sampler)
                with acc.accumulate(model):
                    with acc.autocast():
                        losses = task.losses(model, batch)
                    acc.backward(losses["loss"])
                    if acc.sync_gradients and s.grad_clip > 0:
                        acc.clip_grad_norm_(params, s.grad_clip)
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                for k, v in losses.items():
                    window.setdefault(k, []).append(float(v.detach()))
            sched.step()
            if ema is not None:
                _update_average(ema, acc.unwrap_model(model))
            steps_run += 1
            done = step + 1
            if done % s.log_every == 0 or done == s.steps:
                last = {f"{self.prefix}{k}": float(np.mean(v)) for k, v in window.items()}
                self.curves.log(self.offset + done, {**last, f"{self.prefix}lr": sched.get_last_lr()[0]})
                window = {}
            if validate is not None and (done % s.eval_every == 0 or done == s.steps):
                scores = validate(kept())
                model.train()
                self.curves.log(self.offset + done, {f"{self.prefix}val/{k}": v for k, v in scores.items()})
                if select_key is not None and (best_score is None or scores[select_key] > best_score):
                    best_score, best_step = float(scores[select_key]), done
                    best = {k: v.detach().cpu().clone() for k, v in kept().state_dict().items()}
            if self.folder is not None and ((s.checkpoint_every and done % s.checkpoint_every == 0) or done == s.steps):
                self._save(acc, done, sampler, best, best_step, best_score, window, last, ema)
        acc.wait_for_everyone()
        net = acc.unwrap_model(model)
        if best is not None:
            net.load_state_dict(best)
        elif ema is not None:
            net.load_state_dict(ema.module.state_dict())
        net.eval()
        return FitResult(s.steps, steps_run, start, best_step, best_score, last, time.perf_counter() - t0)


def _moving_average(net: nn.Module, decay: float):
    """torch's `AveragedModel` of `net` with EMA updates (w <- decay w + (1 - decay) w_net), the
    buffers (batch-norm statistics) averaged as well, so the average is a usable network; None
    when decay is 0. Its first update copies the weights."""
    if decay <= 0:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


@torch.no_grad()
def _update_average(ema: nn.Module, net: nn.Module) -> None:
    """One EMA update; integer buffers (batch norm's `num_batches_tracked`) are counts, not
    estimates, so they are copied instead of averaged (which would round them down)."""
    ema.update_parameters(net)
    for mine, theirs in zip(ema.module.buffers(), net.buffers(), strict=True):
        if not mine.is_floating_point():
            mine.copy_(theirs)


@contextlib.contextmanager
def no_grad_eval(model: nn.Module):
    """Evaluate a model in eval mode without gradients, then put it back into training mode."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was)
