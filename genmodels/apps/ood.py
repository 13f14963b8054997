"""Out-of-distribution detection with a fitted likelihood model, and the metrics that grade it.

Deep generative models can give some out-of-distribution (OOD) inputs a *higher* likelihood than
the data they were trained on (Nalisnick et al. 2019): in high dimension the bulk of the
probability mass lies in a "typical set" far from the mode, so an input near the mode (a blank or
blurred image, a low-contrast or low-variance row) is very likely yet unlike any training example;
and the likelihood of an input is dominated by population-level "background" statistics (how many
pixels are zero, how smooth a row is) rather than by what the input means. ``OODDetector`` scores
inputs three ways (higher score = more OOD):

``"nll"``
    the plain negative log-likelihood, -log p(x), in nats.
``"ratio"``
    the likelihood ratio against a background model (Ren et al. 2019):
    log p_background(x) - log p_model(x). The background model is the same family trained on
    *perturbed* training data, so it learns the background statistics but not the semantic
    structure; the ratio cancels what both share. For tables the perturbation (``perturbation=``):

    - ``"resample"`` (default): each cell is, with probability ``rate``, replaced by the same
      column's value in a uniformly random row of the data. This is the tabular analogue of Ren et
      al.'s pixel replacement (they replace a pixel by a uniform draw from the 256 values with rate
      0.1-0.2): every column keeps its marginal distribution (the background statistic) while the
      dependence between columns (the structure) is partly destroyed. Works for every column kind.
    - ``"noise"``: N(0, (``rate`` x column std)^2) noise added to every float column (other
      columns unchanged), as in Ren et al.'s additive-noise variant; it blurs structure at the
      scale of ``rate`` standard deviations.

    Or pass your own ``background=`` Model (fitted: used as is; unfitted: fitted on the perturbed data).
``"typicality"``
    the per-row typicality statistic |-log p(x) - H|, with H the model's entropy estimated by the
    mean NLL on held-out in-distribution rows (Nalisnick et al. 2019b with batch size 1).
    ``typicality_test(X, batch_size=M)`` is the paper's batch test: each batch of M rows is OOD when
    |mean NLL of the batch - H| exceeds a threshold set by bootstrap over held-out rows at level
    ``alpha``; it needs several rows from the same source and catches what single rows cannot.

``ood_metrics(scores_in, scores_out)`` gives AUROC, AUPR and FPR at 95% TPR with OOD as the
positive class.

References:
    Nalisnick, Matsukawa, Teh, Gorur & Lakshminarayanan (2019), Do deep generative models know what
    they don't know? ICLR.
    Ren, Liu, Fertig, Snoek, Poplin, DePristo, Dillon & Lakshminarayanan (2019), Likelihood ratios for
    out-of-distribution detection. NeurIPS.
    Nalisnick, Matsukawa, Teh & Lakshminarayanan (2019b), Detecting out-of-distribution inputs to deep
    generative models using typicality. arXiv:1906.02994.

Example:
    >>> import numpy as np, genmodels as gm
    >>> from genmodels.apps.ood import OODDetector, ood_metrics
    >>> rng = np.random.default_rng(0)
    >>> train, held, test = (rng.standard_normal((n, 20)) for n in (2000, 500, 300))
    >>> det = OODDetector(gm.Model("gmm", n_components=1).fit(train, verbose=False)).fit(held)
    >>> near_mode = 0.1 * rng.standard_normal((300, 20))       # too likely to be typical
    >>> ood_metrics(det.score(test), det.score(near_mode))["auroc"] < 0.1        # plain NLL fails
    True
    >>> ood_metrics(det.score(test, "typicality"), det.score(near_mode, "typicality"))["auroc"] > 0.9
    True
"""
from __future__ import annotations

import copy
import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .. import registry
from ..errors import ConfigError, DataError, NoLikelihoodError, NotFittedError

METHODS = ("nll", "ratio", "typicality")
PERTURBATIONS = ("resample", "noise")


# =========================================================================== metrics
def _check_scores(name: str, s: Any) -> np.ndarray:
    a = np.asarray(s, dtype=np.float64).ravel()
    if a.size == 0:
        raise DataError(f"{name} is empty; give at least one score")
    if not np.isfinite(a).all():
        raise DataError(f"{name} holds NaN or infinite scores; remove them or clip them first")
    return a


def _fpr_at_tpr(s_in: np.ndarray, s_out: np.ndarray, tpr: float) -> float:
    """Share of in-distribution rows flagged at the highest threshold that flags >= tpr of the OOD rows.

    Flagged means score >= t; t is the ceil(tpr n_out)-th largest OOD score.
    """
    k = max(1, math.ceil(tpr * len(s_out) - 1e-9))
    t = np.sort(s_out)[::-1][k - 1]
    return float(np.mean(s_in >= t))


def ood_metrics(scores_in: Any, scores_out: Any, tpr: float = 0.95) -> dict[str, float]:
    """AUROC, AUPR and FPR at ``tpr`` true-positive rate for OOD scores (higher = more OOD).

    OOD rows are the positive class. ``auroc``: probability that an OOD row scores above an
    in-distribution row (ties count half; 0.5 is chance, below 0.5 is worse than chance).
    ``aupr``: average precision with OOD positive (as ``sklearn.metrics.average_precision_score``).
    ``fpr95`` (named for the default tpr): the share of in-distribution rows with score >= t, where t
    is the highest threshold that flags at least ``tpr`` of the OOD rows. Also ``n_in``, ``n_out``.

    >>> ood_metrics([0.1, 0.2, 0.3], [0.25, 0.4])["auroc"]
    0.8333333333333334
    """
    s_in, s_out = _check_scores("scores_in", scores_in), _check_scores("scores_out", scores_out)
    if isinstance(tpr, bool) or not isinstance(tpr, numbers.Real) or not 0 < tpr <= 1:
        raise ConfigError(f"tpr must be a number in (0, 1], got {tpr!r}")
    from sklearn.metrics import average_precision_score, roc_auc_score
    key = "fpr95" if tpr == 0.95 else f"fpr_at_tpr{tpr:g}"
    labels, scores = np.r_[np.zeros(len(s_in)), np.ones(len(s_out))], np.r_[s_in, s_out]
    return {"auroc": float(roc_auc_score(labels, scores)), "aupr": float(average_precision_score(labels, scores)),
            key: _fpr_at_tpr(s_in, s_out, float(tpr)), "n_in": float(len(s_in)), "n_out": float(len(s_out))}


# =========================================================================== perturbation
def _as_frame(X: Any) -> tuple[pd.DataFrame, bool]:
    """(DataFrame, was an ndarray) by the codec's coercion (DataFrame, 2-D array or CSV/Parquet path)."""
    return registry.codec("tabular").coerce(X).reset_index(drop=True), isinstance(X, np.ndarray)


def perturb(X: Any, kind: str = "resample", rate: float = 0.2, seed: int = 0) -> Any:
    """A perturbed copy of the table ``X`` (same type) for training a background model.

    ``"resample"``: each cell, with probability ``rate``, takes the same column's value from a
    uniformly random row (the column's marginal is kept; dependence between columns is weakened).
    ``"noise"``: every float column gets N(0, (rate * column std)^2) noise; other columns are kept.
    """
    if kind not in PERTURBATIONS:
        raise ConfigError(f"perturbation={kind!r} is not one; use one of {PERTURBATIONS}")
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not math.isfinite(rate) or rate < 0 \
            or (kind == "resample" and rate > 1):
        raise ConfigError(f"rate must be a number in [0, 1] for 'resample' (>= 0 for 'noise'), got {rate!r}")
    df, was_array = _as_frame(X)
    rng = np.random.default_rng(seed)
    out = df.copy()
    n = len(df)
    for col in df.columns:
        s = df[col]
        if kind == "resample":
            hit = rng.random(n) < rate                                       # cells to replace
            src = rng.integers(0, n, int(hit.sum()))                         # random rows to take from
            values = s.to_numpy(copy=True)
            values[hit] = s.to_numpy()[src]
            out[col] = pd.Series(values, dtype=s.dtype)
        elif pd.api.types.is_float_dtype(s.dtype):
            std = float(np.nanstd(s.to_numpy(dtype=np.float64)))
            out[col] = s + rate * (std if std > 0 else 1.0) * rng.standard_normal(n)
    if was_array:
        return out.to_numpy(dtype=X.dtype)
    out.index = X.index
    return out


# =========================================================================== detector
@dataclass
class TypicalityResult:
    """The batch typicality test: one entry per batch of ``batch_size`` consecutive rows."""

    statistic: np.ndarray      # |mean NLL of the batch - entropy|, nats
    is_ood: np.ndarray         # statistic > threshold
    threshold: float           # bootstrap (1 - alpha) quantile of the statistic on held-out batches
    entropy: float             # entropy estimate (mean NLL on the held-out rows), nats
    batch_size: int
    alpha: float


def _check_likelihood_model(model: Any, role: str) -> None:
    from ..model import Model
    if not isinstance(model, Model):
        raise ConfigError(f"the {role} must be a genmodels.Model, got {type(model).__name__}")
    if registry.family(model.family).likelihood == "none":
        have = registry.families_where("tabular", lambda c: c.likelihood != "none")
        raise NoLikelihoodError(f"OOD detection scores inputs by likelihood, and the {model.family!r} family "
                                f"has none; use a {role} of one of the families {have}")


class OODDetector:
    """Score inputs as out-of-distribution with a fitted likelihood ``Model`` (higher = more OOD).

    Args:
        model: a fitted ``genmodels.Model`` whose family has a likelihood ("exact" or "bound"; with a
            bound, every score uses the bound in place of the log-likelihood).
        background: the likelihood ratio's background model: None (default) fits a copy of
            ``model``'s configuration on perturbed data in ``fit``; an unfitted ``Model`` is fitted on
            the perturbed data there; a fitted one is used as given.
        perturbation: "resample" or "noise" (see the module docstring); tables only.
        rate: the perturbation's strength (share of cells resampled, or noise in column stds).
        alpha: level of the batch typicality test (its false-alarm rate on in-distribution batches).
        batch_size: default batch size M of ``typicality_test``.
        n_bootstrap: bootstrap batches drawn to set the typicality threshold.
        background_max_time: ``max_time`` of the background model's fit (seconds; None: no limit).
        seed: seeds the perturbation, the background model and the bootstrap.
    """

    def __init__(self, model: Any, background: Any = None, *, perturbation: str = "resample", rate: float = 0.2,
                 alpha: float = 0.01, batch_size: int = 10, n_bootstrap: int = 2000,
                 background_max_time: float | None = None, seed: int = 0):
        _check_likelihood_model(model, "model")
        if not hasattr(model, "module_"):
            raise NotFittedError("OODDetector needs a fitted model; call model.fit(train) first")
        if background is not None:
            _check_likelihood_model(background, "background model")
        if perturbation not in PERTURBATIONS:
            raise ConfigError(f"perturbation={perturbation!r} is not one; use one of {PERTURBATIONS}")
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0 < alpha < 1:
            raise ConfigError(f"alpha must be a number in (0, 1), got {alpha!r}")
        for name, v in (("batch_size", batch_size), ("n_bootstrap", n_bootstrap)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        self.model = model
        self.background = background
        self.perturbation = perturbation
        self.rate = rate
        self.alpha = float(alpha)
        self.batch_size = int(batch_size)
        self.n_bootstrap = int(n_bootstrap)
        self.background_max_time = background_max_time
        self.seed = seed

    # ------------------------------------------------------------------ fit
    def fit(self, X: Any, train: Any = None, *, ratio: bool = True) -> OODDetector:
        """Calibrate on held-out in-distribution rows ``X`` (rows the model was *not* trained on).

        Estimates the entropy for the typicality scores (mean NLL on ``X``) and keeps those NLLs for
        the bootstrap threshold. With ``ratio=True`` it also readies the background model: unless a
        fitted one was given, it is trained on ``perturb(train)`` (``train``: the model's training
        data, which Ren et al. use; when None, ``X`` itself). Returns self.
        """
        nll = self._nll(X, "X")
        if len(nll) < 2:
            raise DataError(f"fit needs at least 2 held-out rows to estimate the entropy, got {len(nll)}")
        self.nll_holdout_ = nll
        self.entropy_ = float(nll.mean())
        self.entropy_se_ = float(nll.std(ddof=1) / math.sqrt(len(nll)))
        if ratio:
            self.background_ = self._ready_background(X if train is None else train)
        return self

    def _ready_background(self, data: Any) -> Any:
        from ..model import Model
        bg = self.background
        if bg is not None and hasattr(bg, "module_"):
            return bg
        if getattr(self.model, "modality_", "tabular") != "tabular":
            raise ConfigError(f"the built-in perturbations are for tables, not {self.model.modality_!r} data; "
                              "pass background= (a Model trained on perturbed data) yourself")
        if bg is None:
            m = self.model
            bg = Model(m.family, modality=m.modality_, seed=self.seed, device=m.device, num_threads=m.num_threads,
                       codec=copy.deepcopy(m.codec), **copy.deepcopy(m.hyperparameters))
        else:
            bg = copy.deepcopy(bg)            # the caller's unfitted Model stays unfitted
        perturbed = perturb(data, self.perturbation, self.rate, seed=self.seed)
        return bg.fit(perturbed, max_time=self.background_max_time, verbose=False)

    # ------------------------------------------------------------------ scores
    def _nll(self, X: Any, name: str) -> np.ndarray:
        nll = -np.asarray(self.model.log_prob(X), dtype=np.float64)
        if len(nll) == 0:
            raise DataError(f"{name} has no rows")
        return nll

    def _check_calibrated(self, what: str) -> None:
        if not hasattr(self, "entropy_"):
            raise NotFittedError(f"{what} needs calibration: call detector.fit(heldout_rows) first")

    def score(self, X: Any, method: str = "nll") -> np.ndarray:
        """Per-row OOD score, shape (n,), higher = more OOD; ``method`` is "nll", "ratio" or "typicality"."""
        if method not in METHODS:
            raise ConfigError(f"method={method!r} is not one; use one of {METHODS}")
        nll = self._nll(X, "X")
        if method == "nll":
            return nll
        if method == "typicality":
            self._check_calibrated("the typicality score")
            return np.abs(nll - self.entropy_)
        if not hasattr(self, "background_"):
            raise NotFittedError("the likelihood ratio needs its background model: call "
                                 "detector.fit(heldout_rows, train=training_rows) first")
        # log p_background(x) - log p_model(x): what the background explains is cancelled
        return np.asarray(self.background_.log_prob(X), dtype=np.float64) + nll

    def threshold(self, batch_size: int | None = None) -> float:
        """Bootstrap threshold of the typicality test for batches of ``batch_size`` rows.

        The (1 - alpha) quantile of |mean NLL - entropy| over ``n_bootstrap`` batches drawn with
        replacement from the held-out NLLs (Nalisnick et al. 2019b, Algorithm 1).
        """
        self._check_calibrated("the typicality threshold")
        m = self._check_batch_size(batch_size)
        rng = np.random.default_rng(self.seed)
        idx = rng.integers(0, len(self.nll_holdout_), size=(self.n_bootstrap, m))
        stats = np.abs(self.nll_holdout_[idx].mean(axis=1) - self.entropy_)
        return float(np.quantile(stats, 1.0 - self.alpha))

    def _check_batch_size(self, batch_size: int | None) -> int:
        m = self.batch_size if batch_size is None else batch_size
        if isinstance(m, bool) or not isinstance(m, numbers.Integral) or m < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {m!r}")
        return int(m)

    def typicality_test(self, X: Any, batch_size: int | None = None) -> TypicalityResult:
        """The batch typicality test on consecutive batches of ``batch_size`` rows of ``X``.

        Rows past the last full batch are left out; ``X`` needs at least one full batch.
        """
        m = self._check_batch_size(batch_size)
        nll = self._nll(X, "X")
        n_batches = len(nll) // m
        if n_batches == 0:
            raise DataError(f"X has {len(nll)} rows, fewer than one batch of batch_size={m}")
        means = nll[:n_batches * m].reshape(n_batches, m).mean(axis=1)
        self._check_calibrated("the typicality test")
        stat = np.abs(means - self.entropy_)
        eps = self.threshold(m)
        return TypicalityResult(statistic=stat, is_ood=stat > eps, threshold=eps, entropy=self.entropy_,
                                batch_size=m, alpha=self.alpha)
