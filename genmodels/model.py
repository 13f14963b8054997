"""``Model``: the user-facing estimator, the one place where codec, module and trainer meet.

>>> import genmodels as gm
>>> d = gm.datasets.load("wine")
>>> m = gm.Model("gmm", seed=0).fit(d.train, verbose=False)
>>> m.sample(5).shape
(5, 13)
>>> float(m.score(d.test)) < 0
True
"""
from __future__ import annotations

import contextlib
import inspect
import math
import os
import time
from dataclasses import fields
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import torch

from . import checkpoint, registry
from .core import REJECTED, Batch, Spec
from .errors import CheckpointError, ConfigError, DataError, NoLikelihoodError, NotFittedError
from .train import TrainConfig, train

TRAIN_KEYS = {f.name for f in fields(TrainConfig)} - {"max_time", "max_epochs", "max_steps"}
_CHUNK = 4096   # rows per forward pass when scoring or sampling
_MAX_DRAWS = 50  # rejection sampling gives up after _MAX_DRAWS * max(n, 20) draws (a small n still gets 1,000)


def _resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device {device!r} is not a device; use 'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for, but no CUDA GPU is available; use device='cpu'")
    return dev


def _cat(parts: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate along the first dimension, padding the second with zeros where widths differ
    (token rows of sampled sequences)."""
    if len(parts) > 1 and parts[0].ndim >= 2 and len({p.shape[1] for p in parts}) > 1:
        width = max(p.shape[1] for p in parts)
        parts = [torch.nn.functional.pad(p, (0, 0) * (p.ndim - 2) + (0, width - p.shape[1])) for p in parts]
    return torch.cat(parts)


def _params(cls) -> set[str]:
    """The keyword arguments of a class's constructor."""
    return set(inspect.signature(cls.__init__).parameters) - {"self", "spec", "args", "kwargs"}


def _check_n(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise ConfigError(f"n must be a positive whole number of examples, got {n!r}")
    return int(n)


class Model:
    """A generative model of one family over one modality, with scikit-learn conventions.

    Args:
        family: a registered family name (``genmodels.list_models()``).
        modality: "tabular", ...; inferred from the data at fit time when None.
        seed: makes fitting and sampling repeatable on CPU.
        device: "auto" (CUDA when present), "cpu", "cuda", "cuda:1".
        num_threads: torch CPU threads while this model works (None: torch's default).
        codec: options of the modality's codec, e.g. ``{"column_kinds": {"zip": "categorical"}}``.
        **hyperparameters: the family's (e.g. ``n_components=5``) and the training loop's
            (``lr``, ``batch_size``, ``patience_steps``, ``ema``, ...; see ``genmodels.train.TrainConfig``).
    """

    def __init__(self, family: str = "flow", *, modality: str | None = None, seed: int = 0,
                 device: str = "auto", num_threads: int | None = None, codec: dict | None = None,
                 **hyperparameters: Any):
        self.family = family
        self.modality = modality
        self.seed = seed
        self.device = device
        self.num_threads = num_threads
        self.codec = dict(codec or {})
        self.hyperparameters = hyperparameters
        registry.canonical(family)                          # unknown names fail here, with the list
        # before the data says which modality this is, a hyper-parameter of any modality's class is allowed
        modalities = [modality] if modality is not None else list(registry.FAMILIES[registry.canonical(family)])
        self._check_hyperparameters([registry.family(family, m) for m in modalities]
                                    + [registry.codec(m) for m in modalities])
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
            raise ConfigError(f"seed must be an integer, got {seed!r}")
        if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
            raise ConfigError(f"num_threads must be a positive integer or None, got {num_threads!r}")
        self._sample_calls = 0

    # ------------------------------------------------------------------ helpers
    def _check_hyperparameters(self, classes: list) -> None:
        """Every hyper-parameter must belong to one of ``classes`` (families, and codecs: a codec's option such
        as ``representation`` or ``block_size`` may be given like a hyper-parameter) or the training loop."""
        allowed = set().union(*(_params(c) for c in classes))
        unknown = set(self.hyperparameters) - allowed - TRAIN_KEYS
        if unknown:
            first = sorted(unknown)[0]
            where = f" for {self.modality_}" if hasattr(self, "modality_") else ""
            raise ConfigError(f"unknown hyper-parameters {sorted(unknown)} for {self.family!r}{where}"
                              f"{registry.suggest(first, allowed | TRAIN_KEYS)}; its own are "
                              f"{sorted(allowed)}, the training loop's are {sorted(TRAIN_KEYS)}")

    @property
    def _modality(self) -> str:
        """The modality this model is (or, before fit, will most likely be) about."""
        known = getattr(self, "modality_", None) or self.modality
        if known:
            return known
        has = registry.FAMILIES[registry.canonical(self.family)]
        return "tabular" if "tabular" in has else next(iter(has))

    def _family_class(self):
        return registry.family(self.family, self._modality)

    def __repr__(self) -> str:
        args = [repr(self.family)] + [f"{k}={v!r}" for k, v in self.hyperparameters.items()]
        return f"Model({', '.join(args)}{', fitted' if hasattr(self, 'module_') else ''})"

    @contextlib.contextmanager
    def _threads(self) -> Iterator[None]:
        if self.num_threads is None:
            yield
            return
        before = torch.get_num_threads()
        torch.set_num_threads(self.num_threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def _check_fitted(self, what: str) -> None:
        if not hasattr(self, "module_"):
            raise NotFittedError(f"this Model({self.family!r}) is not fitted yet; call fit(data) before {what}")

    def _family_kwargs(self) -> dict[str, Any]:
        """Hyper-parameters for the family: all but the training loop's and those only the codec takes."""
        own = _params(self._family_class())
        codec_only = _params(registry.codec(self._modality)) - own
        return {k: v for k, v in self.hyperparameters.items() if k not in TRAIN_KEYS and k not in codec_only}

    def _codec_kwargs(self, codec_cls) -> dict[str, Any]:
        """The codec's options: ``codec=`` and the hyper-parameters that name one of them (``codec=`` wins)."""
        takes = _params(codec_cls)
        return {**{k: v for k, v in self.hyperparameters.items() if k in takes}, **self.codec}

    @property
    def likelihood(self) -> str:
        """"exact", "bound" or "none": the family's, demoted to "bound" when the codec dequantizes."""
        cls = self._family_class()
        own = cls.likelihood
        if own == "exact" and hasattr(self, "codec_") and self.codec_.bound_reasons and not cls.exact_on_discrete:
            return "bound"
        return own

    def _infer_modality(self, data: Any) -> str:
        if self.modality is not None:
            return self.modality
        for name in registry.CODECS:
            try:
                if registry.codec(name).accepts(data):
                    return name
            except (OSError, ValueError):      # e.g. a long text tried as a path: not that modality
                continue
        raise DataError(f"cannot tell what kind of data a {type(data).__name__} is; give a DataFrame, a numpy "
                        f"array, a path to a CSV/Parquet file or to a folder of images, a text or a list of "
                        f"strings, or pass modality= "
                        f"(one of {sorted(registry.CODECS)})")

    # ------------------------------------------------------------------ fit
    def fit(self, data: Any, max_time: float | None = None, max_epochs: int | None = None,
            max_steps: int | None = None, validation: float = 0.1, verbose: bool = True, resume: bool = False,
            checkpoint_dir: str | os.PathLike | None = None) -> "Model":
        """Fit codec and module on ``data``; returns self.

        validation: share of rows held out for early stopping (0 to turn it off).
        checkpoint_dir: where resumable checkpoints go while training (and where ``resume=True`` reads);
            defaults to the folder this model was loaded from or last saved to.
        """
        if not (isinstance(validation, (int, float)) and 0 <= validation < 1):
            raise ConfigError(f"validation must be a fraction in [0, 1), got {validation!r}")
        ckpt = Path(checkpoint_dir) if checkpoint_dir else getattr(self, "path_", None)
        if resume and (ckpt is None or not (Path(ckpt) / checkpoint.CONFIG).exists()):
            raise CheckpointError(f"resume=True but there is no checkpoint at {ckpt}; pass checkpoint_dir= "
                                  "of an interrupted run, or fit without resume")
        started = time.monotonic()            # max_time bounds the whole fit, set-up included
        with self._threads():
            modality = self._infer_modality(data)
            codec_cls = registry.codec(modality)
            family_cls = registry.family(self.family, modality)      # a family without this modality fails here
            if not resume:
                self.modality_ = modality
                self._check_hyperparameters([family_cls, codec_cls])
            raw = codec_cls.coerce(data)
            device = _resolve_device(self.device)
            resume_state = None
            if resume:
                resume_state = self._restore(ckpt, resume=True)        # codec_ and module_ from the checkpoint
            else:
                self.codec_ = codec_cls(**self._codec_kwargs(codec_cls)).fit(raw)
            encoded = getattr(self.codec_, "encode_train", self.codec_.encode)(raw)   # e.g. with augmentation
            n = len(encoded["log_w"])                                  # one entry per row, whatever the layout
            g = torch.Generator().manual_seed(self.seed)
            perm = torch.randperm(n, generator=g)
            n_val = int(math.floor(n * validation)) if n * validation >= 1 else 0
            val = {k: v[perm[:n_val]] for k, v in encoded.items()} if n_val else None
            tr = {k: v[perm[n_val:]] for k, v in encoded.items()}
            if not resume:
                torch.manual_seed(self.seed)                          # weight init is repeatable
                self.module_ = family_cls(self.codec_.spec(), **self._family_kwargs())
            self.module_.to(device)
            if not resume and not self.module_.closed_form:
                self.module_.prepare(self.codec_.dequantize({k: v.to(device) for k, v in tr.items()},
                                                            torch.Generator(device).manual_seed(self.seed)))
            cfg = TrainConfig(**{**family_cls.train_defaults,
                                 **{k: v for k, v in self.hyperparameters.items() if k in TRAIN_KEYS}},
                              max_time=max_time, max_epochs=max_epochs, max_steps=max_steps)
            self.train_hashes_ = self._row_hashes(raw)
            if self.module_.closed_form:
                dq = lambda b, seed: self.codec_.dequantize({k: v.to(device) for k, v in b.items()},  # noqa: E731
                                                            torch.Generator(device).manual_seed(seed))
                info = self.module_.fit_closed_form(dq(tr, self.seed), dq(val, self.seed + 1) if val else None,
                                                    generator=torch.Generator(device).manual_seed(self.seed))
                self.fit_info_ = {"stopped": "converged", **{k: float(v) for k, v in info.items()}}
                self.history_ = []
            else:
                on_ckpt = (lambda snap: self._save(ckpt, resume=snap)) if ckpt else None
                state = train(self.module_, tr, val, transform=self.codec_.dequantize, cfg=cfg, seed=self.seed,
                              device=device, verbose=verbose, resume=resume_state, on_checkpoint=on_ckpt,
                              started=started)
                self.history_ = state.history
                self.fit_info_ = {"stopped": state.stopped, "epochs": state.epoch, "steps": state.step,
                                  "best_val_loss": state.best_val}
            self.fit_info_["fit_seconds"] = round(time.monotonic() - started, 3)
            self.fit_info_["rows"] = n if "doc" not in encoded else int(encoded["doc"].max()) + 1   # examples
        return self

    def _row_hashes(self, raw: Any) -> np.ndarray:
        from .metrics.tabular import row_hashes
        return row_hashes(raw) if self.modality_ == "tabular" else np.zeros(0, dtype=np.int64)

    # ------------------------------------------------------------------ use
    def sample(self, n: int, seed: int | None = None, condition: dict[str, Any] | None = None,
               **options: Any) -> Any:
        """``n`` new examples as raw data (tabular: a DataFrame with the training schema; images: uint8
        arrays in the training layout).

        condition: ``{"column": value, ...}`` (images: ``{"label": 7}``): examples drawn from the model's
            conditional distribution given those values, which they hold exactly (families with
            ``conditional = True``).
        **options: the family's own sampling options, e.g. ``guidance=2.0, steps=50`` for image diffusion,
            ``temperature=0.8`` for an image flow (see the family's ``sample``), and the codec's
            ``decode_options`` (molecules: ``canonical_only=True``, rejection sampling; ``sample_stats_``
            then says how many examples were drawn to keep ``n``).
        """
        n = _check_n(n)
        self._check_fitted("sample")
        self._check_sample_options(options)
        if hasattr(self.codec_, "sample_options"):          # e.g. a text prompt -> token ids
            options = self.codec_.sample_options(options)
        decode_options = {k: options.pop(k) for k in getattr(self.codec_, "decode_options", ()) if k in options}
        cond = self._encode_condition(condition)
        seed = self._next_seed(seed)
        g = torch.Generator(self.module_.device).manual_seed(seed)
        out, drawn = self._draw(n, cond, g, options, seed, decode_options), n
        if decode_options:                                   # rejection sampling: replace what decode rejected
            out, limit = [o for o in out if o is not REJECTED], _MAX_DRAWS * max(n, 20)
            while len(out) < n:
                if drawn >= limit:
                    raise DataError(f"only {len(out)} of {drawn} drawn examples passed {decode_options}; the model "
                                    "rarely produces such examples: train it longer, change the prompt or other "
                                    "options, or sample without those options")
                more = min(limit - drawn, math.ceil((n - len(out)) * 1.1 * drawn / max(len(out), 1)) + 1)
                out += [o for o in self._draw(more, cond, g, options, seed + drawn, decode_options) if o is not REJECTED]
                drawn += more
            out = out[:n]
        self.sample_stats_ = {"drawn": drawn, "kept": n}
        return out if cond is None else self.codec_.apply_condition(out, condition)

    def _draw(self, n: int, cond: Batch | None, g: torch.Generator, options: dict, seed: int,
              decode_options: dict) -> Any:
        """``n`` examples drawn from the module in chunks and decoded to raw data."""
        parts = []
        with self._threads(), torch.no_grad():
            chunk = getattr(self.codec_, "rows_per_pass", _CHUNK)
            for i in range(0, n, chunk):
                m = min(chunk, n - i)
                given = None if cond is None else {k: v.expand(m, *v.shape[1:]).to(self.module_.device)
                                                   for k, v in cond.items()}
                out = self.module_.sample(m, condition=given, generator=g, **options)
                parts.append({k: v.cpu() for k, v in out.items()})
        batch = {k: _cat([p[k] for p in parts]) for k in parts[0]}
        return self.codec_.decode(batch, generator=torch.Generator().manual_seed(int(seed)), **decode_options)

    def _next_seed(self, seed: int | None) -> int:
        """``seed``, or (None) one derived from the model's seed and a call counter: repeatable scripts."""
        if seed is None:
            seed = self.seed * 1_000_003 + self._sample_calls + 1
            self._sample_calls += 1
        return int(seed)

    def _check_sample_options(self, options: dict[str, Any]) -> None:
        """Options the family's ``sample`` does not take fail here, by name, with the ones it does take."""
        params = inspect.signature(self.module_.sample).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return
        known = set(params) - {"n", "condition", "generator"} | set(getattr(self.codec_, "decode_options", ()))
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"unknown sampling option(s) {unknown} for {self.family!r}{registry.suggest(unknown[0], known)}; "
                              f"it takes {sorted(known) or 'none'}")

    def _check_conditional(self, what: str) -> None:
        """A clear error when this family cannot condition (checked on the class: works before fit)."""
        if not self._family_class().conditional:
            able = registry.families_where(self._modality, lambda c: c.conditional)
            raise ConfigError(f"the {self.family!r} family cannot {what}; families that can: {able}")

    def _encode_condition(self, condition: dict[str, Any] | None) -> Batch | None:
        if condition is None:
            return None
        if not isinstance(condition, dict) or not condition:
            raise ConfigError(f"condition must be a non-empty dict of column -> value, got {condition!r}")
        self._check_conditional("sample conditionally")
        return self.codec_.encode_condition(condition)

    def impute(self, data: Any, seed: int | None = None, max_rounds: int = 100) -> Any:
        """``data`` with each missing cell drawn from the model's conditional distribution given the
        row's observed cells (families with ``conditional = True``); observed cells are returned as given.

        A draw that fills a cell with "missing" (a state the model learned from missing values in
        training) is rejected and that row drawn again, up to ``max_rounds`` times, so the imputed
        cells follow p(missing cells | observed cells, the cells are not missing). Cells of rows still
        rejected after that (rare) stay missing; ``self.impute_info_["unresolved_rows"]`` counts them.
        """
        self._check_fitted("impute")
        self._check_conditional("impute missing values")
        df = self.codec_.coerce(data)
        miss = self.codec_.check_columns(df).isna().to_numpy()
        out = df.copy()
        rows = np.flatnonzero(miss.any(1))
        self.impute_info_ = {"rows": int(len(rows)), "cells": int(miss.sum()), "rounds": 0, "unresolved_rows": 0}
        if not len(rows):
            return out.to_numpy(copy=True) if isinstance(data, np.ndarray) else out
        cond, missing_code = self.codec_.encode_partial(df.iloc[rows])
        g = torch.Generator(self.module_.device).manual_seed(self._next_seed(seed))
        drawn = {"x": torch.zeros_like(cond["x"]), "c": torch.zeros_like(cond["c"])}
        pending = torch.arange(len(rows))
        with self._threads(), torch.no_grad():
            for r in range(max_rounds):
                self.impute_info_["rounds"] = r + 1
                for i in range(0, len(pending), _CHUNK):
                    idx = pending[i:i + _CHUNK]
                    given = {k: v[idx].to(self.module_.device) for k, v in cond.items()}
                    b = self.module_.sample(len(idx), condition=given, generator=g)
                    drawn["x"][idx], drawn["c"][idx] = b["x"].cpu().float(), b["c"].cpu()
                bad = ((cond["c"][pending] == -1) & (drawn["c"][pending] == missing_code)).any(1)
                pending = pending[bad]
                if not len(pending):
                    break
        self.impute_info_["unresolved_rows"] = int(len(pending))
        filled = self.codec_.decode(drawn, generator=torch.Generator().manual_seed(int(g.initial_seed())))
        filled = pd.DataFrame(filled, columns=df.columns) if isinstance(filled, np.ndarray) else filled
        for j, name in enumerate(df.columns):
            cells = rows[miss[rows, j]]
            if len(cells):
                out.iloc[cells, j] = filled.iloc[np.searchsorted(rows, cells), j].to_numpy()
        return out.to_numpy(copy=True) if isinstance(data, np.ndarray) else out

    def log_prob(self, data: Any) -> np.ndarray:
        """Log-likelihood of each example in nats, in the raw data's units; shape (n,), float64.

        A lower bound where ``self.likelihood == "bound"`` (see ``self.codec_.bound_reasons``).
        """
        self._check_fitted("log_prob")
        if self.likelihood == "none":
            have = registry.families_where(self._modality, lambda c: c.likelihood != "none")
            raise NoLikelihoodError(f"the {self.family!r} family has no likelihood; use one of {have} to score data")
        raw = self.codec_.coerce(data)
        batch = self.codec_.encode(raw)
        n = batch["log_w"].shape[0]
        out = np.empty(n, dtype=np.float64)
        dev = self.module_.device
        with self._threads(), torch.no_grad(), torch.random.fork_rng(devices=[] if dev.type == "cpu" else [dev]):
            torch.manual_seed(self.seed)                 # IWAE-style estimators repeat exactly
            g = torch.Generator(dev).manual_seed(self.seed)
            chunk = getattr(self.codec_, "rows_per_pass", _CHUNK)
            for i in range(0, n, chunk):
                b = self.codec_.dequantize({k: v[i:i + chunk].to(dev) for k, v in batch.items()}, g)
                out[i:i + chunk] = self._log_prob_batch(b).cpu().numpy()
        if "doc" in batch:                     # rows are windows of documents (text): nats per document
            doc = batch["doc"].numpy()
            out = np.bincount(doc, weights=out, minlength=int(doc.max()) + 1)
        return out

    def _log_prob_batch(self, b: Batch) -> torch.Tensor:
        """Raw-unit log-likelihoods of one batch. Rows without a label (-1) scored by a model that learned
        labels get the marginal log p(x) = logsumexp_k [log p(x | k) + log pi_k] over the training classes."""
        lp = self.module_.log_prob(b).double() + self.codec_.log_det(b)
        prior = getattr(self.codec_, "label_log_prior", None)
        if prior is None or "label" not in b or not (b["label"] < 0).any():
            return lp
        free = b["label"] < 0
        rows = {k: v[free] for k, v in b.items()}
        per_class = [self.module_.log_prob({**rows, "label": torch.full_like(rows["label"], k)}).double()
                     + self.codec_.log_det(rows) + float(prior[k]) for k in range(len(prior))]
        lp[free] = torch.logsumexp(torch.stack(per_class), dim=0)
        return lp

    def score_samples(self, X: Any) -> np.ndarray:
        """scikit-learn alias of ``log_prob``."""
        return self.log_prob(X)

    def score(self, X: Any, y: Any = None) -> float:
        """Mean log-likelihood per example (nats), as scikit-learn's density estimators."""
        return float(np.mean(self.log_prob(X)))

    # ------------------------------------------------------------------ persistence
    def _config(self) -> dict[str, Any]:
        return {"family": self.family, "modality": self.modality_, "seed": self.seed,
                "hyperparameters": self.hyperparameters, "codec_options": self.codec,
                "module_config": self.module_.config, "spec": self.module_.spec.to_json(),
                "codec": self.codec_.state(), "likelihood": self.likelihood,
                "fit_info": getattr(self, "fit_info_", {}), "history": getattr(self, "history_", []),
                "versions": {"torch": torch.__version__}}

    def _save(self, path: str | os.PathLike, resume: dict | None = None) -> Path:
        files = {"model": {k: v for k, v in self.module_.state_dict().items()},
                 "data": {"train_hashes": torch.from_numpy(np.array(self.train_hashes_, dtype=np.int64))}}
        config = self._config()
        if resume is not None:
            tensors: dict[str, torch.Tensor] = {}
            config["resume"] = checkpoint.flatten(resume, tensors)
            files["resume"] = tensors
        return checkpoint.save(path, config, files)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted model to the folder ``path`` (safetensors + JSON); returns the folder."""
        self._check_fitted("save")
        self.path_ = Path(self._save(path))
        return self.path_

    def _restore(self, path: str | os.PathLike, resume: bool = False) -> dict | None:
        config = checkpoint.read_config(path)
        try:
            self.modality_ = config["modality"]
            self.codec_ = registry.codec(self.modality_).from_state(config["codec"])
            cls = registry.family(config["family"], self.modality_)
            self.module_ = cls(Spec.from_json(config["spec"]), **config["module_config"])
            self.module_.load_state_dict(checkpoint.load(path, "model"))
            self.train_hashes_ = checkpoint.load(path, "data")["train_hashes"].numpy()
        except CheckpointError:
            raise
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"the saved model at {path} is corrupt or incompatible ({type(e).__name__}: "
                                  f"{str(e)[:200]}); re-save or refit it") from None
        self.fit_info_ = config.get("fit_info", {})
        self.history_ = config.get("history", [])
        self.path_ = Path(path)
        if not resume:
            return None
        if "resume" not in config:
            raise CheckpointError(f"the model at {path} has no training state to resume (it finished); "
                                  "fit again without resume=True")
        return checkpoint.unflatten(config["resume"], checkpoint.load(path, "resume"))

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "auto") -> "Model":
        config = checkpoint.read_config(path)
        try:
            model = cls(config["family"], modality=config["modality"], seed=config["seed"], device=device,
                        codec=config.get("codec_options"), **config["hyperparameters"])
        except KeyError as e:
            raise CheckpointError(f"the saved model at {path} lacks {e}; it is corrupt, re-save or refit it") from None
        model._restore(path)
        model.module_.to(_resolve_device(device))
        return model


def load(path: str | os.PathLike, device: str = "auto") -> Model:
    """Load a model saved by ``Model.save`` (or ``genmodels fit --out``)."""
    return Model.load(path, device=device)
