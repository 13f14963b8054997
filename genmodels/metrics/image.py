"""Image metrics: bits/dim, Fréchet distance, precision/recall/density/coverage, C2ST, memorization.

All are plain functions over uint8 image arrays (n, H, W) or (n, H, W, C) or over feature arrays
(n, d); ``evaluate_images`` is the one entry point that runs them all on a fitted model.

- Bits/dim: -log p(pixels) / (D ln 2), D = C*H*W, from ``Model.log_prob`` (nats per image, 8-bit
  units); labelled ``bits_per_dim`` when the likelihood is exact and ``bits_per_dim_bound`` when it
  is a bound (van den Oord et al., 2016).
- Fréchet distance between Gaussians fitted to two feature sets (Heusel et al., 2017):
  ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2)), in the feature space of a small classifier
  trained on the data set itself (``features.py``), not Inception: this is "FID" only in form.
- Precision, recall, density and coverage with k nearest neighbours (Naeem et al., 2020); the same
  numbers as the reference ``prdc`` package (strict inequalities, k-th neighbour excluding self).
- C2ST: cross-validated AUROC of a classifier telling real from generated features
  (``samples.c2st_auroc``; Lopez-Paz & Oquab, 2017).
- Memorization: the share of samples whose nearest training image (Euclidean distance in pixel
  space) is closer than the nearest pair of distinct training images. Copies of training images
  score 1; fresh draws from the data distribution score about 2 / n_train.

Every sample metric has a real-vs-real floor, ``<name>_floor``: the same metric with the held-out
test images in place of the samples (the score of a model that samples the true distribution). Both
are measured against the training images as the reference set, with as many candidates each.

References:
    | Pixel Recurrent Neural Networks (van den Oord et al., 2016), https://arxiv.org/abs/1601.06759
    | GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium (Heusel et al., 2017)
    | https://arxiv.org/abs/1706.08500
    | Reliable Fidelity and Diversity Metrics for Generative Models (Naeem et al., 2020)
    | https://arxiv.org/abs/2002.09797
    | Revisiting Classifier Two-Sample Tests (Lopez-Paz & Oquab, 2017), https://arxiv.org/abs/1610.06545

Example::

    >>> evaluate_images(model, data.test, train=data.train)
    {"bits_per_dim": 1.21, "frechet_distance": 3.4, "frechet_distance_floor": 0.9, "precision": 0.8, ...}
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..codecs.image import ImageCodec
from ..core import check_int
from ..errors import ConfigError, DataError
from . import likelihood
from .features import FeatureNet, as_images, feature_net_for, n_classes, random_feature_net
from .samples import c2st_auroc

_BLOCK = 1024        # rows per block of a distance matrix: memory O(block * n)


# --------------------------------------------------------------------------- likelihood
def bits_per_dim(log_prob_nats: Any, shape: int | Sequence[int]):
    """-log p / (D ln 2) with D = prod(shape): ``shape`` is one image's shape (e.g. (28, 28) or
    (32, 32, 3)) or D itself; ``log_prob_nats`` is per image in 8-bit pixel units (``Model.log_prob``)."""
    dims = [shape] if np.ndim(shape) == 0 else list(shape)
    if not dims or any(isinstance(d, bool) or int(d) != d or d < 1 for d in dims):
        raise ConfigError(f"shape must be a positive integer or a tuple of them, got {shape!r}")
    return likelihood.bits_per_dim(log_prob_nats, int(np.prod([int(d) for d in dims])))


# --------------------------------------------------------------------------- Fréchet distance
def _features(a: Any, name: str) -> np.ndarray:
    x = np.asarray(a, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise DataError(f"{name} must be a non-empty 2-D array of features (n, d), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise DataError(f"{name} holds NaN or infinite values")
    return x


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (eigenvalues clipped at 0)."""
    w, v = np.linalg.eigh((s + s.T) / 2.0)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance_from_stats(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any) -> float:
    """||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^(1/2)): the squared 2-Wasserstein distance
    between N(mu1, S1) and N(mu2, S2).

    Tr((S1 S2)^(1/2)) is computed as Tr((S1^(1/2) S2 S1^(1/2))^(1/2)), the same number (the two
    matrices are similar), from symmetric eigendecompositions: exact for the singular covariances of
    real features (a ReLU unit that is zero on every image has zero variance), where
    ``scipy.linalg.sqrtm(S1 @ S2)`` (pytorch-fid) warns, is slow and needs an ``eps`` fudge.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, float)), np.atleast_1d(np.asarray(mu2, float))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, float)), np.atleast_2d(np.asarray(sigma2, float))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise DataError(f"means and covariances do not match: {mu1.shape}, {mu2.shape}, {s1.shape}, {s2.shape}")
    r1 = _psd_sqrt(s1)
    m = r1 @ s2 @ r1                                                     # symmetric PSD, similar to S1 S2
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2.0), 0.0, None)).sum()
    diff = mu1 - mu2
    return float(max(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean, 0.0))


def frechet_distance(feats_a: Any, feats_b: Any) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (mean, covariance with ddof=1)."""
    a, b = _features(feats_a, "feats_a"), _features(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise DataError(f"feats_a has {a.shape[1]} features but feats_b has {b.shape[1]}")
    if len(a) < 2 or len(b) < 2:
        raise DataError(f"a covariance needs at least 2 rows in each set, got {len(a)} and {len(b)}")
    return frechet_distance_from_stats(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


# --------------------------------------------------------------------------- precision / recall / density / coverage
def _distances(a: np.ndarray, b: np.ndarray, a2: np.ndarray, b2: np.ndarray) -> np.ndarray:
    """Euclidean distances (len(a), len(b)) from squared norms and one matrix product (BLAS)."""
    return np.sqrt(np.maximum(a2[:, None] + b2[None, :] - 2.0 * (a @ b.T), 0.0))


def _kth_neighbour_radii(x: np.ndarray, k: int, block: int) -> np.ndarray:
    """Distance of each row of x to its k-th nearest other row (the point itself is the 0-th)."""
    x2 = (x * x).sum(1)
    out = np.empty(len(x))
    for i in range(0, len(x), block):
        d = _distances(x[i:i + block], x, x2[i:i + block], x2)
        d[np.arange(len(d)), np.arange(i, i + len(d))] = 0.0            # self, exactly
        out[i:i + block] = np.partition(d, k, axis=1)[:, k]
    return out


def prdc(real_feats: Any, fake_feats: Any, k: int = 5, block: int = _BLOCK,
         real_radii: np.ndarray | None = None) -> dict[str, float]:
    """Precision, recall, density and coverage of fake features against real ones (Naeem et al., 2020).

    With B(x, r) the ball of radius r around x and NND_k(x) the distance from x to its k-th nearest
    neighbour in its own set:

        precision = share of fakes inside some real ball B(x_i, NND_k(x_i))
        recall    = share of reals inside some fake ball B(y_j, NND_k(y_j))
        density   = (1 / k) * mean over fakes of the number of real balls containing it
        coverage  = share of reals whose ball B(x_i, NND_k(x_i)) contains at least one fake

    "Inside" is strict (d < r), as in the reference ``prdc`` package. Computed in blocks of
    ``block`` rows, so memory stays O(block * n). ``real_radii``: the NND_k of the real set when
    already known (``evaluate_images`` scores samples and a floor against the same real set).
    """
    x, y = _features(real_feats, "real_feats"), _features(fake_feats, "fake_feats")
    if x.shape[1] != y.shape[1]:
        raise DataError(f"real_feats has {x.shape[1]} features but fake_feats has {y.shape[1]}")
    k = check_int("k", k, 1)
    block = check_int("block", block, 1)
    if k >= min(len(x), len(y)):
        raise DataError(f"k={k} nearest neighbours need more than k rows in each set, got {len(x)} and {len(y)}")
    r_real = _kth_neighbour_radii(x, k, block) if real_radii is None else np.asarray(real_radii, float)  # (n,)
    if r_real.shape != (len(x),):
        raise DataError(f"real_radii must have one radius per real row ({len(x)}), got shape {r_real.shape}")
    r_fake = _kth_neighbour_radii(y, k, block)                           # (m,)
    x2, y2 = (x * x).sum(1), (y * y).sum(1)
    n_balls = np.empty(len(y))                    # per fake: how many real balls hold it
    recalled = np.zeros(len(x), dtype=bool)       # per real: inside some fake ball
    nearest_fake = np.full(len(x), np.inf)        # per real: distance to its nearest fake
    for j in range(0, len(y), block):
        d = _distances(x, y[j:j + block], x2, y2[j:j + block])          # (n, b)
        n_balls[j:j + block] = (d < r_real[:, None]).sum(0)
        recalled |= (d < r_fake[None, j:j + block]).any(1)
        np.minimum(nearest_fake, d.min(1), out=nearest_fake)
    return {"precision": float((n_balls > 0).mean()), "recall": float(recalled.mean()),
            "density": float(n_balls.mean() / k), "coverage": float((nearest_fake < r_real).mean())}


# --------------------------------------------------------------------------- memorization
def _flat(images: np.ndarray) -> np.ndarray:
    # integer pixel values as float64: every squared distance below is an exact integer (< 2^53)
    return images.reshape(len(images), -1).astype(np.float64)


def _sq_dists(a: np.ndarray, b: np.ndarray, a2: np.ndarray, b2: np.ndarray) -> np.ndarray:
    return np.maximum(a2[:, None] + b2[None, :] - 2.0 * (a @ b.T), 0.0)     # exact for integer pixels


def nearest_training_pair(train: Any, block: int = _BLOCK) -> float:
    """Smallest Euclidean distance between two distinct training images (pixels scaled to [0, 1]);
    exact duplicates are skipped, so the answer is > 0. DataError when all images are equal."""
    t, _ = as_images(train, "train")
    tf = _flat(t)
    t2 = (tf * tf).sum(1)
    best = np.inf
    for i in range(0, len(tf), block):
        d = _sq_dists(tf[i:i + block], tf, t2[i:i + block], t2)
        d[d == 0] = np.inf                                               # self and exact duplicates
        best = min(best, float(d.min()))
    if not np.isfinite(best):
        raise DataError("memorization needs at least two distinct training images")
    return math.sqrt(best) / 255.0


def nearest_training_distances(samples: Any, train: Any, block: int = _BLOCK) -> np.ndarray:
    """Euclidean distance (pixels scaled to [0, 1]) from each sample to its nearest training image: (n,)."""
    s, _ = as_images(samples, "samples")
    t, _ = as_images(train, "train")
    if s.shape[1:] != t.shape[1:]:
        raise DataError(f"samples have shape {s.shape[1:]} but training images {t.shape[1:]} (H, W, C)")
    sf, tf = _flat(s), _flat(t)
    s2, t2 = (sf * sf).sum(1), (tf * tf).sum(1)
    out = np.empty(len(sf))
    for i in range(0, len(sf), block):
        out[i:i + block] = _sq_dists(sf[i:i + block], tf, s2[i:i + block], t2).min(1)
    return np.sqrt(out) / 255.0


def memorization(samples: Any, train: Any, *, threshold: float | None = None, block: int = _BLOCK) -> float:
    """Share of samples whose nearest training image is closer than the nearest training pair.

    Distances are Euclidean in pixel space (exact: integer pixels), where a copy is a copy; the
    threshold is ``nearest_training_pair(train)``, the smallest distance between two distinct
    training images, so an exact or near-exact copy of a training image counts and a fresh image
    from the data distribution almost never does (about 2 / n_train of them by exchangeability).
    ``threshold``: that distance when already known (it costs O(n_train^2)).
    """
    if threshold is None:
        threshold = nearest_training_pair(train, block)
    return float((nearest_training_distances(samples, train, block) < threshold).mean())


# --------------------------------------------------------------------------- one entry point
def sample_metrics(reference: np.ndarray, candidate: np.ndarray, *, k: int = 5, seed: int = 0,
                   c2st_classifier: str = "logistic", reference_radii: np.ndarray | None = None) -> dict[str, float]:
    """Fréchet distance, precision/recall/density/coverage and C2ST AUROC of ``candidate`` features
    against ``reference`` features (``reference_radii``: their k-NN radii, see ``prdc``)."""
    out = {"frechet_distance": frechet_distance(reference, candidate)}
    out.update(prdc(reference, candidate, k=k, real_radii=reference_radii))
    out["c2st_auroc"] = c2st_auroc(reference, candidate, seed=seed, classifier=c2st_classifier)
    return out


def _features_fn(feature_net: Any) -> Callable[[np.ndarray], np.ndarray]:
    if hasattr(feature_net, "features"):
        return feature_net.features
    if callable(feature_net):
        return lambda x: np.asarray(feature_net(x), dtype=np.float64)
    raise ConfigError(f"feature_net must be a FeatureNet (or an object with .features(images)) or a "
                      f"callable images -> (n, d) features, got {type(feature_net).__name__}")


def evaluate_images(model: Any, test: Any, *, train: Any, n_samples: int | None = None, seed: int = 0,
                    feature_net: Any = None, k: int = 5, c2st_classifier: str = "logistic",
                    given_label: bool = False) -> dict[str, float]:
    """All image metrics of a fitted genmodels ``Model`` on held-out ``test`` images.

    ``test``/``train``: uint8 arrays (n, H, W[, C]) or ``Images`` (with labels). ``n_samples``
    (default: the number of test images) samples are drawn with ``model.sample(n, seed=seed)``.
    ``feature_net``: None (train on ``train``'s labels, cached; random features when ``train`` has
    no labels), a FeatureNet, or a callable images -> (n, d). ``k``: neighbours of PRDC.
    ``c2st_classifier``: "logistic" (a linear probe of the features, the usual test in a learned
    feature space and ~10x faster) or "hgb" (gradient boosting, also non-linear differences). Keys:

    - ``bits_per_dim`` (exact likelihood) or ``bits_per_dim_bound`` (a bound: the true bits/dim is
      at most this), each with ``_stderr``; absent when the model has no likelihood. The test images
      are scored without their labels, so a class-conditional model reports the marginal
      log p(x) = logsumexp_k [log p(x | k) + log pi_k] (``Model.log_prob``; K passes of the model),
      the number papers compare; ``given_label=True`` scores log p(x | label) instead (one pass),
      under the key ``bits_per_dim_given_label[_bound]``;
    - ``frechet_distance``, ``precision``, ``recall``, ``density``, ``coverage``, ``c2st_auroc``
      (features of the samples vs the training images) and ``memorization`` (pixel space), each
      with ``<name>_floor``: the same with the test images in place of the samples (test subsampled
      to ``n_samples`` when that is smaller, so both sides have as many candidates);
    - ``feature_net_accuracy`` (on the labelled test images, when the net was trained) and
      ``feature_net_trained`` (1.0 trained classifier features, 0.0 random features).
    """
    if train is None:
        raise ConfigError("image evaluation needs the training images (train=...): the feature net is "
                          "trained on them and they are the reference set of the sample metrics")
    test_x, test_y = as_images(test, "test")
    train_x, train_y = as_images(train, "train")
    if test_x.shape[1:] != train_x.shape[1:]:
        raise DataError(f"test images have shape {test_x.shape[1:]} but training images {train_x.shape[1:]}")
    k = check_int("k", k, 1)
    if min(len(train_x), len(test_x)) <= k:
        raise DataError(f"k={k} nearest neighbours need more than k training and test images, "
                        f"got {len(train_x)} and {len(test_x)}")
    n = len(test_x) if n_samples is None else check_int("n_samples", n_samples, k + 1)
    out: dict[str, float] = {}

    if model.likelihood != "none":
        given_label = bool(given_label) and test_y is not None
        scored = test if given_label else ImageCodec.coerce(test).images     # the images alone: marginal log p(x)
        bpd = np.asarray(bits_per_dim(np.asarray(model.log_prob(scored), dtype=np.float64), test_x.shape[1:]))
        key = ("bits_per_dim" + ("_given_label" if given_label else "")
               + ("" if model.likelihood == "exact" else "_bound"))
        out[key] = float(bpd.mean())
        out[f"{key}_stderr"] = float(bpd.std(ddof=1) / math.sqrt(len(bpd))) if len(bpd) > 1 else 0.0

    samples, _ = as_images(model.sample(n, seed=seed), "model.sample output")
    if samples.shape[1:] != train_x.shape[1:]:
        raise DataError(f"the model samples images of shape {samples.shape[1:]} but the data has {train_x.shape[1:]}")
    floor_x = test_x
    if len(test_x) > n:                     # as many real candidates as samples: comparable numbers
        floor_x = test_x[np.sort(np.random.default_rng(seed).choice(len(test_x), n, replace=False))]

    if feature_net is None:
        feature_net = (feature_net_for(train_x, train_y) if n_classes(train_y) >= 2
                       else random_feature_net(train_x.shape[1:]))
    features = _features_fn(feature_net)
    trained = bool(getattr(feature_net, "trained", True))
    out["feature_net_trained"] = float(trained)
    if trained and n_classes(test_y) >= 1 and isinstance(feature_net, FeatureNet):
        out["feature_net_accuracy"] = feature_net.accuracy(test_x, test_y)

    ref = features(train_x)
    radii = _kth_neighbour_radii(_features(ref, "training features"), k, _BLOCK)
    for suffix, cand_x in (("", samples), ("_floor", floor_x)):
        for name, value in sample_metrics(ref, features(cand_x), k=k, seed=seed, c2st_classifier=c2st_classifier,
                                          reference_radii=radii).items():
            out[name + suffix] = value
    threshold = nearest_training_pair(train_x)
    out["memorization"] = memorization(samples, train_x, threshold=threshold)
    out["memorization_floor"] = memorization(floor_x, train_x, threshold=threshold)
    return out
