"""The one training loop for every gradient-trained family.

AdamW; linear warm-up then cosine decay over the budget (whichever of ``max_steps``,
``max_epochs`` and ``max_time`` runs out first sets the horizon, so a time budget anneals too);
gradient clipping; optional EMA of the weights; early stopping on validation loss that restores
the best weights; a progress bar (loss, rows/s, time left); a resumable state that the caller
checkpoints atomically every ``checkpoint_every`` seconds.

Families with two players (GANs) or special steps define ``configure_optimizers(lr, weight_decay)
-> list[Optimizer]`` and ``training_step(batch, step, optimizers) -> dict`` (floats, with "loss");
this same loop drives them: budgets, schedule (applied to every optimizer), validation through
``module.loss`` (for a GAN, a sample-quality distance), early stopping, checkpoints.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch
from torch import Tensor

from .core import Batch, GenerativeModule
from .errors import ConfigError, DataError

Transform = Callable[[Batch, torch.Generator], Batch]
BUCKET_CHUNK = 50         # batches per sorted chunk when bucketing by length


@dataclass
class TrainConfig:
    """Optimisation settings; every field can be passed to ``Model.fit`` or ``Model(...)`` by name."""

    lr: float = 1e-3
    weight_decay: float = 1e-5
    batch_size: int | None = None     # None: n // 10 clipped to [32, 256], so small tables get many steps
    eval_every: int = 50              # validate at the first epoch end after this many steps (or every this
                                      # many steps when an epoch is longer: large data sets)
    val_rows: int | None = None       # validate on at most this many held-out rows (a fixed subset); None: all
    warmup_steps: int = 100
    grad_clip: float = 5.0
    ema: float | None = None          # e.g. 0.999: evaluate and keep an exponential moving average
    patience_steps: int = 2000        # optimizer steps without validation improvement before stopping
                                      # (steps, not epochs: an epoch of a small table is a few steps)
    max_time: float | None = None     # seconds
    max_epochs: int | None = None
    max_steps: int | None = None
    checkpoint_every: float = 60.0    # seconds between resumable checkpoints
    bucket: bool = False              # batch rows of similar batch["length"] together (sequence families
                                      # trim the padding, so a batch costs its longest row, not the longest)

    def validate(self) -> None:
        if self.batch_size is not None and not (isinstance(self.batch_size, int) and self.batch_size > 0):
            raise ConfigError(f"batch_size must be a positive integer or None, got {self.batch_size!r}")
        if self.val_rows is not None and not (isinstance(self.val_rows, int) and self.val_rows > 0):
            raise ConfigError(f"val_rows must be a positive integer or None, got {self.val_rows!r}")
        for name in ("lr", "eval_every"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("max_time", "max_epochs", "max_steps"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise ConfigError(f"{name} must be > 0 (or None for no limit), got {v!r}")
        if not isinstance(self.bucket, bool):
            raise ConfigError(f"bucket must be True or False, got {self.bucket!r}")
        if self.ema is not None and not 0 < self.ema < 1:
            raise ConfigError(f"ema must be in (0, 1) or None, got {self.ema!r}")
        if self.max_time is None and self.max_epochs is None and self.max_steps is None:
            self.max_epochs = 200   # early stopping usually ends sooner


@dataclass
class TrainState:
    """Everything needed to continue a run after a kill (besides the module's weights)."""

    step: int = 0
    epoch: int = 0
    elapsed: float = 0.0
    best_val: float = math.inf
    best_step: int = 0
    history: list | None = None
    stopped: str = ""

    def to_json(self) -> dict:
        return asdict(self)


def _take(batch: Batch, idx: Tensor, device: torch.device) -> Batch:
    return {k: v[idx].to(device, non_blocking=True) for k, v in batch.items()}


def _rows(batch: Batch) -> int:
    return next(iter(batch.values())).shape[0]


@torch.no_grad()
def evaluate_loss(module: GenerativeModule, batch: Batch, transform: Transform, seed: int,
                  batch_size: int, device: torch.device) -> float:
    """Mean loss over ``batch`` with a fixed dequantization seed (comparable across epochs)."""
    module.eval()
    g = torch.Generator().manual_seed(seed)
    total, n = 0.0, _rows(batch)
    for i in range(0, n, batch_size):
        idx = torch.arange(i, min(i + batch_size, n))
        b = transform(_take(batch, idx, torch.device("cpu")), g)
        b = {k: v.to(device) for k, v in b.items()}
        total += float(module.loss(b)) * len(idx)
    module.train()
    return total / n


def _batches(n: int, bs: int, steps: int, gen: torch.Generator, length: Tensor | None) -> list[Tensor]:
    """One epoch's row indices, ``steps`` batches of ``bs``. ``length`` (n,) given: bucketed batches, whose
    rows have similar lengths -- shuffle, cut into chunks of BUCKET_CHUNK batches, sort each chunk by
    length, cut it into batches, shuffle the batches (the same n // bs batches' worth of rows as without)."""
    perm = torch.randperm(n, generator=gen)[:steps * bs]
    if length is None:
        return list(perm.split(bs))
    batches = []                 # steps * bs is a multiple of bs, so every batch is full
    for chunk in perm.split(BUCKET_CHUNK * bs):
        batches += list(chunk[torch.argsort(length[chunk], stable=True)].split(bs))
    return [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]


def _lr_factor(cfg: TrainConfig, state: TrainState, steps_per_epoch: int) -> float:
    if state.step < cfg.warmup_steps:
        return (state.step + 1) / cfg.warmup_steps
    done = 0.0   # fraction of the budget spent: the largest over the limits that are set
    if cfg.max_steps:
        done = max(done, state.step / cfg.max_steps)
    if cfg.max_epochs:
        done = max(done, state.step / (cfg.max_epochs * steps_per_epoch))
    if cfg.max_time:
        done = max(done, state.elapsed / cfg.max_time)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(done, 1.0)))


class _Progress:
    """A rich progress bar on stderr, or nothing when verbose is off."""

    def __init__(self, verbose: bool, cfg: TrainConfig, steps_per_epoch: int):
        self.bar = None
        if not verbose:
            return
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
        total = None
        if cfg.max_steps:
            total = cfg.max_steps
        if cfg.max_epochs:
            total = min(total or math.inf, cfg.max_epochs * steps_per_epoch)
        self.cfg, self.total = cfg, total
        self.bar = Progress(TextColumn("[bold]training"), BarColumn(), TextColumn("{task.fields[info]}"),
                            TimeElapsedColumn(), transient=False)
        self.task = self.bar.add_task("train", total=total, info="")
        self.bar.start()

    def update(self, state: TrainState, loss: float, val: float, rows_per_s: float) -> None:
        if self.bar is None:
            return
        left = ""
        if self.cfg.max_time:
            left = f" | {max(0.0, self.cfg.max_time - state.elapsed):.0f}s left"
        completed = state.step if self.total else None
        if self.cfg.max_time and not self.total:
            self.bar.update(self.task, total=self.cfg.max_time)
            completed = state.elapsed
        self.bar.update(self.task, completed=completed,
                        info=f"epoch {state.epoch} | loss {loss:.4f} | val {val:.4f} | {rows_per_s:,.0f} rows/s{left}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def train(module: GenerativeModule, train_data: Batch, val_data: Batch | None, *, transform: Transform,
          cfg: TrainConfig, seed: int = 0, device: torch.device | str = "cpu", verbose: bool = True,
          resume: dict[str, Any] | None = None,
          on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
          started: float | None = None) -> TrainState:
    """Minimise ``module.loss`` on ``train_data`` within the budget of ``cfg``.

    ``resume`` is a dict produced earlier through ``on_checkpoint`` (keys: state, optimizers, best,
    current, generator, ema). Returns the final state;
    the module ends holding the best weights seen on validation (or the last, without validation).
    """
    cfg.validate()
    device = torch.device(device)
    n = _rows(train_data)
    if n == 0:
        raise DataError("no training rows left after the validation split; give more data or validation=0")
    module.to(device).train()
    if hasattr(module, "configure_optimizers"):
        opts = list(module.configure_optimizers(cfg.lr, cfg.weight_decay))
    else:
        opts = [torch.optim.AdamW(module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)]
    for opt in opts:
        for group in opt.param_groups:
            group.setdefault("base_lr", group["lr"])
    ema = None
    if cfg.ema is not None:
        ema = torch.optim.swa_utils.AveragedModel(module, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.ema))
    gen = torch.Generator().manual_seed(seed)
    state, best = TrainState(history=[]), None
    if resume:
        module.load_state_dict(resume["current"])            # where the run stopped, not the best so far
        state = TrainState(**resume["state"])
        for opt, sd in zip(opts, resume["optimizers"]):
            opt.load_state_dict(sd)
        best = resume.get("best")
        gen.set_state(resume["generator"])
        if ema is not None and resume.get("ema") is not None:
            ema.module.load_state_dict(resume["ema"])
    if val_data is not None and cfg.val_rows is not None and _rows(val_data) > cfg.val_rows:
        keep = torch.randperm(_rows(val_data), generator=torch.Generator().manual_seed(seed + 2))[:cfg.val_rows]
        val_data = {k: v[keep] for k, v in val_data.items()}
    bs = min(cfg.batch_size or min(256, max(32, n // 10)), n)
    steps_per_epoch = max(1, n // bs)   # drop the ragged last batch: stable loss scale
    lengths = train_data.get("length") if cfg.bucket else None
    if cfg.bucket and not isinstance(lengths, Tensor):
        raise ConfigError('bucket=True batches rows by their "length", which this data has not; '
                          "use bucket=False")
    progress = _Progress(verbose, cfg, steps_per_epoch)
    step_fn = getattr(module, "training_step", None)
    # ``started`` (time.monotonic() when the caller began the fit) makes max_time bound the whole fit,
    # set-up such as a family's ``prepare`` included, not only the optimisation steps
    t_start, t_ckpt = (started or time.monotonic()) - state.elapsed, time.monotonic()
    losses, last_eval, t_eval = [], state.step, time.monotonic()

    def out_of_budget() -> str:
        if cfg.max_steps and state.step >= cfg.max_steps:
            return "max_steps"
        if cfg.max_epochs and state.epoch >= cfg.max_epochs:
            return "max_epochs"
        if cfg.max_time and state.elapsed >= cfg.max_time:
            return "max_time"
        return ""

    def snapshot() -> dict[str, Any]:
        return {"state": state.to_json(), "optimizers": [o.state_dict() for o in opts], "best": best,
                "current": {k: v.detach().cpu() for k, v in module.state_dict().items()},
                "generator": gen.get_state(), "ema": ema.module.state_dict() if ema is not None else None}

    def validate() -> bool:
        """Score the validation data, keep the best weights, report; True when training should stop."""
        nonlocal losses, last_eval, t_eval, best, t_ckpt
        train_loss = sum(losses) / len(losses)
        scored = ema.module if ema is not None else module
        val = evaluate_loss(scored, val_data, transform, seed + 1, 4 * bs, device) if val_data else train_loss
        state.history.append({"epoch": state.epoch, "step": state.step, "loss": train_loss, "val": val,
                              "time": round(state.elapsed, 3)})
        # without validation a two-player family's loss says nothing about quality: keep the last weights
        if (val_data or step_fn is None) and val < state.best_val - 1e-4:
            state.best_val, state.best_step = val, state.step
            best = copy.deepcopy({k: v.detach().cpu() for k, v in scored.state_dict().items()})
        rows_per_s = len(losses) * bs / max(time.monotonic() - t_eval, 1e-9)
        progress.update(state, train_loss, val, rows_per_s)
        losses, last_eval, t_eval = [], state.step, time.monotonic()
        if val_data and state.step - state.best_step >= cfg.patience_steps:
            state.stopped = "early_stopping"
            return True
        if on_checkpoint and time.monotonic() - t_ckpt >= cfg.checkpoint_every:
            on_checkpoint(snapshot())
            t_ckpt = time.monotonic()
        return False

    long_epochs = steps_per_epoch > cfg.eval_every      # validate inside the epoch, every eval_every steps
    try:
        while True:
            state.stopped = out_of_budget()
            if state.stopped:
                break
            stop = False
            for i, idx in enumerate(_batches(n, bs, steps_per_epoch, gen, lengths)):
                batch = transform(_take(train_data, idx, torch.device("cpu")), gen)
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                factor = _lr_factor(cfg, state, steps_per_epoch)
                for opt in opts:
                    for group in opt.param_groups:
                        group["lr"] = group["base_lr"] * factor
                if step_fn is not None:
                    loss = float(step_fn(batch, state.step, opts)["loss"])
                else:
                    loss_t = module.loss(batch)
                    if not torch.isfinite(loss_t):
                        raise FloatingPointError(f"the loss became {float(loss_t)} at step {state.step}; "
                                                 "lower lr (e.g. lr=1e-4) or grad_clip")
                    opts[0].zero_grad(set_to_none=True)
                    loss_t.backward()
                    torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.grad_clip)
                    opts[0].step()
                    loss = float(loss_t.detach())
                if ema is not None:
                    ema.update_parameters(module)
                losses.append(loss)
                state.step += 1
                state.elapsed = time.monotonic() - t_start
                if out_of_budget():
                    break
                if long_epochs and state.step - last_eval >= cfg.eval_every and i < steps_per_epoch - 1:
                    stop = validate()
                    if stop:
                        break
            if stop:
                break
            state.epoch += 1
            if state.step - last_eval < cfg.eval_every and not out_of_budget():
                continue
            if losses and validate():
                break
    finally:
        progress.close()
    final = snapshot() if on_checkpoint else None
    if best is not None:
        module.load_state_dict(best)
    elif ema is not None:
        module.load_state_dict(ema.module.state_dict())
    module.eval()
    if final is not None:
        on_checkpoint(final)          # the saved model holds the best weights; "current" resumes the run
    return state
