"""Likelihood summaries and unit conversions.

``Model.log_prob`` returns nats per example in the raw data's units (design.md, section 3); these
helpers summarise such a vector and convert it to the units papers report.

Example::

    >>> summarize_log_likelihood(model.log_prob(test))   # {"mean": -3.2, "std": 1.1, ...}
    >>> bits_per_dim(model.log_prob(images), 3 * 32 * 32)
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError, DataError

LN2 = math.log(2.0)


def summarize_log_likelihood(lp: np.ndarray) -> dict:
    """Summary of per-example log-likelihoods (nats).

    Returns {"mean", "std", "stderr", "min", "count"}: std is the sample standard deviation
    (ddof=1; 0.0 for one example) and stderr = std / sqrt(count), the standard error of the mean.
    -inf entries (an example the model deems impossible) are kept and make the mean -inf; NaN
    raises DataError, since it means a bug upstream rather than a property of the model.
    """
    x = np.asarray(lp, dtype=float).ravel()
    if x.size == 0:
        raise DataError("no log-likelihoods to summarise; pass at least one example")
    n_nan = int(np.isnan(x).sum())
    if n_nan:
        raise DataError(f"{n_nan} of {x.size} log-likelihoods are NaN; check the data for missing "
                        f"or invalid values and the model for numerical problems")
    n = x.size
    finite = np.isfinite(x).all()
    # std of a vector containing -inf is undefined (inf - inf); report it as inf, not NaN
    std = float(x.std(ddof=1)) if n > 1 and finite else (0.0 if n == 1 else math.inf)
    return {"mean": float(x.mean()), "std": std, "stderr": std / math.sqrt(n),
            "min": float(x.min()), "count": int(n)}


def nats_to_bits(x):
    """Convert nats to bits (divide by ln 2); works on scalars and arrays, keeps the sign."""
    return np.asarray(x, dtype=float) / LN2 if np.ndim(x) else float(x) / LN2


def bits_per_dim(nats_per_example, n_dims: int):
    """Negative log-likelihood in bits per dimension: -log p(x) / (n_dims * ln 2).

    ``nats_per_example`` is the log-likelihood as ``log_prob`` returns it (nats per example, raw
    units, usually negative for images); the result is positive and lower is better, the
    convention of image-model papers. Pass a mean to get the usual single number.

    References: van den Oord et al., "Pixel Recurrent Neural Networks", ICML 2016 (section 5.1).
    """
    if int(n_dims) != n_dims or n_dims <= 0:
        raise ConfigError(f"n_dims must be a positive integer, got {n_dims}")
    return -nats_to_bits(nats_per_example) / int(n_dims)
