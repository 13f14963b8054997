"""Image metrics: closed forms (bits/dim, Fréchet distance of Gaussians), the reference ``prdc``
package, constructed memorization cases, the cached feature classifier and ``evaluate_images``."""
from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pytest
import scipy.linalg
import torch

from genmodels.errors import ConfigError, DataError
from genmodels.metrics.features import (as_images, cache_key, feature_net_for, load_feature_net,
                                        random_feature_net, train_feature_net)
from genmodels.metrics.image import (bits_per_dim, evaluate_images, frechet_distance,
                                     frechet_distance_from_stats, memorization, nearest_training_pair, prdc)


LOG_256 = math.log(256.0)


@pytest.fixture(scope="module")
def digits():
    """sklearn digits 8x8 scaled to 0..255: (train images, train labels, test images, test labels)."""
    from sklearn.datasets import load_digits
    d = load_digits()
    x = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)
    p = np.random.default_rng(0).permutation(len(x))
    tr, te = p[:1400], p[1400:1700]
    return x[tr], d.target[tr], x[te], d.target[te]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """GENMODELS_CACHE pointed at a fresh folder for this module."""
    folder = tmp_path_factory.mktemp("gm_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENMODELS_CACHE", str(folder))
        yield folder


@pytest.fixture(scope="module")
def net(digits, cache):
    xtr, ytr, _, _ = digits
    return feature_net_for(xtr, ytr)                  # trains (~3 s) and caches under `cache`


# --------------------------------------------------------------------------- bits/dim
def test_bits_per_dim_uniform_pixels_is_eight():
    lp = np.full(4, -64 * math.log(256.0))            # uniform over 256 levels on 64 pixels
    for shape in ((8, 8), (8, 8, 1), 64):
        np.testing.assert_allclose(bits_per_dim(lp, shape), 8.0)
    assert bits_per_dim(-3 * 4 * 4 * math.log(2.0), (4, 4, 3)) == pytest.approx(1.0)
    for bad in ((8, 0), (), 2.5, -1):
        with pytest.raises(ConfigError):
            bits_per_dim(lp, bad)


# --------------------------------------------------------------------------- Fréchet distance
def test_frechet_distance_closed_form_diagonal():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    s1, s2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    # by hand: ||mu1 - mu2||^2 + sum_i (s1_i + s2_i - 2 sqrt(s1_i s2_i))
    by_hand = (1.0 + 0.0 + 6.25) + ((1 + 9 - 6) + (4 + 1 - 4) + (0.25 + 0.25 - 0.5))
    assert frechet_distance_from_stats(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(by_hand, abs=1e-9)
    assert by_hand == pytest.approx(12.25)
    # singular covariances (a feature constant on every image): 1 + 4 - 2 sqrt(1 * 4) = 1 on the first axis
    assert frechet_distance_from_stats(np.zeros(2), np.diag([1.0, 0.0]), np.zeros(2), np.diag([4.0, 0.0])) == \
        pytest.approx(1.0, abs=1e-12)


def test_frechet_distance_non_commuting_covariances():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    s1, s2 = a @ a.T + 0.1 * np.eye(4), b @ b.T + 0.1 * np.eye(4)
    mu1, mu2 = rng.normal(size=4), rng.normal(size=4)
    # independent route (pytorch-fid's): the principal square root of the product S1 S2 itself
    tr_sqrt = np.trace(scipy.linalg.sqrtm(s1 @ s2)).real
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
    assert frechet_distance_from_stats(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance_from_stats(mu1, s1, mu2, s1) == pytest.approx(((mu1 - mu2) ** 2).sum(), abs=1e-8)


def test_frechet_distance_of_samples():
    rng = np.random.default_rng(2)
    a = rng.normal([0.0, 0.0, 0.0], [1.0, 2.0, 0.5], size=(20000, 3))
    b = rng.normal([1.0, 0.0, 0.0], [1.0, 1.0, 0.5], size=(20000, 3))
    exact = frechet_distance_from_stats(np.zeros(3), np.diag([1, 4, 0.25]), np.r_[1.0, 0, 0], np.diag([1, 1, 0.25]))
    assert exact == pytest.approx(2.0)                # 1 (means) + (2 - 1)^2 (second scale)
    assert frechet_distance(a, b) == pytest.approx(exact, abs=0.1)
    assert frechet_distance(a, b) == pytest.approx(
        frechet_distance_from_stats(a.mean(0), np.cov(a.T), b.mean(0), np.cov(b.T)), rel=1e-12)
    assert frechet_distance(a[:500], a[:500]) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(DataError):
        frechet_distance(a, b[:, :2])
    with pytest.raises(DataError):
        frechet_distance(a[:1], b)


# --------------------------------------------------------------------------- precision / recall / density / coverage
@pytest.mark.parametrize("n_real,n_fake,dim,k,shift,block", [
    (300, 200, 8, 5, 0.3, 1024), (150, 260, 3, 3, 1.0, 37), (200, 200, 16, 10, 0.0, 64)])
def test_prdc_matches_reference_package(n_real, n_fake, dim, k, shift, block):
    reference = pytest.importorskip("prdc", reason="the reference prdc package (pip install prdc)")
    rng = np.random.default_rng(n_real + dim)
    real = rng.normal(size=(n_real, dim))
    fake = rng.normal(shift, 1.2, size=(n_fake, dim))
    from joblib import parallel_config
    # the package prints the sizes and asks joblib for 8 processes: run it in this one
    with contextlib.redirect_stdout(io.StringIO()), parallel_config(backend="sequential"):
        want = reference.compute_prdc(real, fake, k)
    got = prdc(real, fake, k=k, block=block)
    assert set(got) == {"precision", "recall", "density", "coverage"}
    for name in got:
        assert got[name] == pytest.approx(float(want[name]), abs=1e-6), name
    radii = np.partition(np.linalg.norm(real[:, None] - real[None], axis=-1), k, axis=1)[:, k]
    assert prdc(real, fake, k=k, real_radii=radii) == got     # known radii of the real set: the same


def test_prdc_known_cases():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(100, 4))
    same = prdc(x, x, k=3)
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    far = prdc(x, x + 100.0, k=3)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
    with pytest.raises(DataError):
        prdc(x, x[:3], k=3)                           # k must be below each set's size
    with pytest.raises(DataError):
        prdc(x, x[:, :2])
    with pytest.raises(ConfigError):
        prdc(x, x, k=0)


# --------------------------------------------------------------------------- memorization
def test_memorization_hand_made():
    train = np.array([0, 10, 30], dtype=np.uint8).reshape(3, 1, 1)
    assert nearest_training_pair(train) == pytest.approx(10 / 255)
    samples = np.array([5, 29, 100, 20], dtype=np.uint8).reshape(4, 1, 1)
    # nearest training distances 5, 1, 70, 10: strictly below 10 -> the first two
    assert memorization(samples, train) == pytest.approx(0.5)
    # an exact duplicate in the training set does not make the threshold 0
    dup = np.array([0, 0, 10, 30], dtype=np.uint8).reshape(4, 1, 1)
    assert nearest_training_pair(dup) == pytest.approx(10 / 255)
    assert memorization(samples, dup) == pytest.approx(0.5)
    with pytest.raises(DataError):
        nearest_training_pair(np.zeros((3, 2, 2), dtype=np.uint8))   # no two distinct images
    with pytest.raises(DataError):
        memorization(np.zeros((2, 3, 3), dtype=np.uint8), train)       # shape mismatch


def test_memorization_copies_versus_fresh_digits(digits):
    xtr, _, xte, _ = digits
    assert memorization(xtr[:200], xtr) == 1.0
    nudged = xtr[:200].copy()
    nudged[:, 3, 3] ^= 1                              # one pixel off by one level: still a copy
    assert memorization(nudged, xtr) == 1.0
    assert memorization(xte, xtr) <= 0.01             # fresh digits from the same distribution
    half = np.concatenate([xtr[:100], xte[:100]])
    assert memorization(half, xtr) == pytest.approx(0.5, abs=0.01)


# --------------------------------------------------------------------------- feature classifier
def test_feature_net_learns_digits_and_is_cached(net, digits, cache):
    xtr, ytr, xte, yte = digits
    assert net.trained and not net.info["cached"]
    assert net.accuracy(xte, yte) > 0.85              # chance is 0.1
    f = net.features(xte)
    assert f.shape == (len(xte), net.dim) and f.dtype == np.float64 and net.dim == 128
    folders = list((cache / "feature_nets").iterdir())
    assert len(folders) == 1
    names = {p.suffix for p in folders[0].iterdir()}
    assert names == {".json", ".safetensors"}         # weights + JSON, never pickle
    again = feature_net_for(xtr, ytr)                 # from disk, not retrained
    assert again.info["cached"] and again.info["key"] == net.info["key"]
    np.testing.assert_array_equal(again.features(xte), f)
    np.testing.assert_array_equal(load_feature_net(folders[0]).predict(xte), net.predict(xte))
    # the key depends on the labels, the images and the configuration
    y = ytr.astype(np.int64)
    base = cache_key(xtr[..., None], y, list(range(10)), {"epochs": 5})
    assert cache_key(xtr[..., None], np.roll(y, 1), list(range(10)), {"epochs": 5}) != base
    assert cache_key(xtr[::-1, ..., None], y, list(range(10)), {"epochs": 5}) != base
    assert cache_key(xtr[..., None], y, list(range(10)), {"epochs": 4}) != base


def test_feature_net_string_labels_unlabelled_rows_and_corrupt_cache(digits, cache):
    xtr, ytr, xte, yte = digits
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"], dtype=object)
    labels = names[ytr].copy()
    labels[:50] = None                                # unlabelled rows are left out of training
    a = feature_net_for(xtr, labels, epochs=2)
    assert a.info["n_train"] == len(xtr) - 50 and sorted(a.info["label_values"]) == sorted(names)
    assert a.accuracy(xte, names[yte]) > 0.5
    folder = cache / "feature_nets" / a.info["key"][:32]
    for f in folder.glob("*.safetensors"):
        f.write_bytes(f.read_bytes()[:100])           # a truncated cache entry is retrained, not trusted
    b = feature_net_for(xtr, labels, epochs=2)
    assert not b.info["cached"]
    np.testing.assert_array_equal(a.features(xte), b.features(xte))   # seeded: the same net again
    assert feature_net_for(xtr, labels, epochs=2).info["cached"]


def test_feature_net_bad_input(digits):
    xtr, ytr, _, _ = digits
    with pytest.raises(DataError, match="at least 2 classes"):
        train_feature_net(xtr)                        # no labels
    with pytest.raises(DataError, match="at least 2 classes"):
        train_feature_net(xtr, np.zeros(len(xtr), dtype=int))
    with pytest.raises(DataError):
        train_feature_net(xtr, ytr[:10])
    with pytest.raises(DataError):
        train_feature_net(xtr.astype(np.float32) / 255, ytr)
    for bad in ({"epochs": 0}, {"widths": (8, 8)}, {"lr": -1.0}, {"depth": 3}):
        with pytest.raises(ConfigError):
            train_feature_net(xtr, ytr, **bad)
    net = random_feature_net((8, 8, 1))
    assert not net.trained
    with pytest.raises(DataError):
        net.features(np.zeros((2, 9, 9), dtype=np.uint8))   # not the image shape it was made for


# --------------------------------------------------------------------------- evaluate_images
class _Stub:
    """A fitted model as evaluate_images sees it: likelihood, sample(n, seed=...), log_prob(images)."""

    def __init__(self, draw, likelihood="none", lp_per_pixel=-LOG_256):
        self.draw, self.likelihood, self.lp_per_pixel = draw, likelihood, lp_per_pixel

    def sample(self, n, seed=None):
        return self.draw(n, np.random.default_rng(seed))

    def log_prob(self, data):
        x, self.scored_labels = as_images(data)
        return np.full(len(x), self.lp_per_pixel * x[0].size)


def test_evaluate_images_copying_and_noise_models(net, digits):
    xtr, ytr, xte, yte = digits
    copier = _Stub(lambda n, rng: xtr[rng.choice(len(xtr), n, replace=False)], likelihood="exact")
    out = evaluate_images(copier, (xte, yte), train=(xtr, ytr), feature_net=net)
    assert out["bits_per_dim"] == pytest.approx(8.0) and out["bits_per_dim_stderr"] == 0.0
    assert copier.scored_labels is None               # scored without labels: the marginal log p(x)
    assert out["memorization"] == 1.0 and out["memorization_floor"] <= 0.01
    assert out["feature_net_trained"] == 1.0 and out["feature_net_accuracy"] > 0.85
    for name in ("frechet_distance", "precision", "recall", "density", "coverage", "c2st_auroc", "memorization"):
        assert np.isfinite(out[name]) and np.isfinite(out[f"{name}_floor"])
    assert 0.35 < out["c2st_auroc_floor"] < 0.65 and out["precision_floor"] > 0.6

    noise = _Stub(lambda n, rng: rng.integers(0, 256, (n, 8, 8), dtype=np.uint8), likelihood="bound",
                  lp_per_pixel=-LOG_256 - math.log(2.0))
    bad = evaluate_images(noise, (xte, yte), train=(xtr, ytr), n_samples=200, feature_net=net)
    assert bad["bits_per_dim_bound"] == pytest.approx(9.0) and "bits_per_dim" not in bad
    given = evaluate_images(noise, (xte[:60], yte[:60]), train=(xtr, ytr), feature_net=net, given_label=True)
    assert given["bits_per_dim_given_label_bound"] == pytest.approx(9.0) and "bits_per_dim_bound" not in given
    np.testing.assert_array_equal(noise.scored_labels, yte[:60])    # log p(x | label): labels passed on
    assert bad["frechet_distance"] > 10 * bad["frechet_distance_floor"]
    # precision is inflated by real outliers' large k-NN balls (Naeem et al.'s point); density is not
    assert bad["precision"] < 0.5 and bad["density"] < 0.2 and bad["coverage"] < 0.1 and bad["c2st_auroc"] > 0.95
    assert out["density_floor"] > 0.7 and out["coverage_floor"] > 0.4
    assert bad["memorization"] == 0.0
    assert evaluate_images(noise, (xte, yte), train=(xtr, ytr), n_samples=200, feature_net=net) == bad  # seeded


def test_evaluate_images_default_net_unlabelled_and_errors(net, digits):
    xtr, ytr, xte, _ = digits
    noise = _Stub(lambda n, rng: rng.integers(0, 256, (n, 8, 8), dtype=np.uint8))
    out = evaluate_images(noise, xte[:150], train=(xtr, ytr))        # loads the fixture's cached net
    assert out["feature_net_trained"] == 1.0 and "feature_net_accuracy" not in out   # test has no labels
    assert not any(k.startswith("bits_per_dim") for k in out)                         # likelihood "none"
    free = evaluate_images(noise, xte[:150], train=xtr)                # no labels at all: random features
    assert free["feature_net_trained"] == 0.0 and "feature_net_accuracy" not in free
    assert free["frechet_distance"] > 10 * free["frechet_distance_floor"]
    with pytest.raises(ConfigError, match="training images"):
        evaluate_images(noise, xte, train=None)
    with pytest.raises(DataError):
        evaluate_images(noise, xte, train=np.zeros((10, 9, 9), dtype=np.uint8))
    wrong = _Stub(lambda n, rng: np.zeros((n, 9, 9), dtype=np.uint8))
    with pytest.raises(DataError, match="shape"):
        evaluate_images(wrong, xte, train=(xtr, ytr), feature_net=net)


def test_evaluate_images_fitted_model_end_to_end(net, digits):
    import genmodels as gm
    from genmodels.codecs.image import Images
    xtr, ytr, xte, yte = digits
    torch.manual_seed(0)
    model = gm.Model("vae", modality="image", seed=0, iw_samples=4).fit(Images(xtr, ytr), max_steps=10)
    out = evaluate_images(model, Images(xte[:100], yte[:100]), train=Images(xtr, ytr), feature_net=net)
    assert model.likelihood == "bound" and 0.0 < out["bits_per_dim_bound"] < 16.0
    for name in ("frechet_distance", "precision", "recall", "density", "coverage", "c2st_auroc", "memorization"):
        assert 0.0 <= out[name] < math.inf and f"{name}_floor" in out
