"""``evaluate(model, data)``: the metrics the field uses for the model's modality, by name.

One evaluator per modality (a dict, not an if/elif ladder). Each returns plain floats; the
likelihood entry is named ``log_likelihood`` when exact and ``log_likelihood_bound`` when the
model's number is a lower bound, so the label travels with the value.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pandas as pd

from .errors import ConfigError
from .model import Model


def _likelihood(model: Model, data: Any) -> dict[str, float]:
    if model.likelihood == "none":
        return {}
    from .metrics.likelihood import summarize_log_likelihood
    s = summarize_log_likelihood(model.log_prob(data))
    key = "log_likelihood" if model.likelihood == "exact" else "log_likelihood_bound"
    return {key: s["mean"], f"{key}_stderr": s["stderr"]}


def evaluate_tabular(model: Model, data: Any, *, train: Any = None, n_samples: int | None = None,
                     seed: int = 0) -> dict[str, float]:
    """Held-out log-likelihood, marginal distances (KS / TV), correlation difference, C2ST AUROC, copy rate.

    With ``train`` (the training table) also the distance to the closest training record:
    ``dcr_median`` for synthetic rows and ``dcr_holdout_median`` for the held-out rows, its yardstick
    (synthetic rows much closer to the training rows than held-out rows are suggest memorisation).
    """
    from .metrics import samples, tabular
    real = model.codec_.check_columns(model.codec_.coerce(data))
    synth = model.sample(n_samples or len(real), seed=seed)
    if isinstance(synth, np.ndarray):
        synth = pd.DataFrame(synth, columns=real.columns)
    kinds = model.codec_.kinds
    out = _likelihood(model, data)
    dist = tabular.marginal_distances(real, synth, kinds)
    num = [c for c, k in kinds.items() if k in ("continuous", "integer", "datetime")]
    cat = [c for c in kinds if c not in num]
    out["marginal_distance"] = float(np.mean(list(dist.values())))
    if num:
        out["ks_mean"] = float(np.mean([dist[c] for c in num]))
    if cat:
        out["tv_mean"] = float(np.mean([dist[c] for c in cat]))
    out["correlation_difference"] = float(tabular.correlation_difference(real, synth, [c for c in num if kinds[c] != "datetime"]))
    fr, fs = samples.table_to_features(real, synth, kinds)
    out["c2st_auroc"] = float(samples.c2st_auroc(fr, fs, seed=seed))
    out["copy_rate"] = float(tabular.copy_rate_from_hashes(model.train_hashes_, synth))
    if train is not None:
        tr = model.codec_.check_columns(model.codec_.coerce(train))
        out["dcr_median"] = float(np.median(tabular.distance_to_closest_record(tr, synth, kinds)))
        out["dcr_holdout_median"] = float(np.median(tabular.distance_to_closest_record(tr, real, kinds)))
    return out


def evaluate_images(model: Model, data: Any, **options: Any) -> dict[str, float]:
    """Bits/dim, and the sample metrics in a small classifier's feature space with their real-vs-real
    floors (``genmodels.metrics.image.evaluate_images``; needs ``train=``, the training images)."""
    from .metrics.image import evaluate_images as run
    return run(model, data, **options)


def evaluate_text(model: Model, data: Any, **options: Any) -> dict[str, float]:
    """Bits/char, perplexity per token, distinct-n and (with ``train=``) memorization of samples
    (``genmodels.metrics.text.evaluate_text``)."""
    from .metrics.text import evaluate_text as run
    return run(model, data, **options)


def evaluate_molecules(model: Model, data: Any, *, train: Any = None, n_samples: int = 1000, seed: int = 0,
                       max_test: int = 10_000, **options: Any) -> dict[str, float]:
    """The MOSES metrics of ``n_samples`` samples against ``data`` (the test molecules; a seeded subset of
    ``max_test`` when larger) and ``train`` (novelty; the model's own training molecules are not kept),
    plus the held-out log-likelihood bound in nats per molecule (``genmodels.metrics.molecule``)."""
    from .metrics.molecule import evaluate_molecules as run
    test = model.codec_.coerce(data)
    if len(test) > max_test:
        keep = np.sort(np.random.default_rng(seed).choice(len(test), size=max_test, replace=False))
        test = [test[i] for i in keep]
    out = _likelihood(model, test)
    generated = model.sample(n_samples, seed=seed)
    ref_train = model.codec_.coerce(train) if train is not None else []
    out.update(run(generated, train=ref_train, test=test, seed=seed, **options))
    return out


EVALUATORS: dict[str, Callable[..., dict[str, float]]] = {"tabular": evaluate_tabular, "image": evaluate_images,
                                                          "text": evaluate_text, "molecule": evaluate_molecules}


def evaluate(model: Model, data: Any, **options: Any) -> dict[str, float]:
    """Metrics of a fitted ``model`` on held-out ``data``; see the modality's evaluator for the names."""
    model._check_fitted("evaluate")
    if model.modality_ not in EVALUATORS:
        raise ConfigError(f"no evaluator for modality {model.modality_!r}")
    return EVALUATORS[model.modality_](model, data, **options)
