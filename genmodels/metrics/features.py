"""A small image classifier trained on the data set itself, whose penultimate layer is the feature
space of the sample metrics in ``image.py`` (Fréchet distance, precision/recall/density/coverage, C2ST).

FID (Heusel et al., 2017) measures distances in the pool layer of an Inception network trained on
ImageNet; that network does not ship with genmodels and is a poor judge of 8x8 or 28x28 grayscale
digits anyway. Following the practice of small-image papers (e.g. the "MNIST classifier" FID of
Bińkowski et al., 2018), genmodels trains a small CNN on the labelled training images themselves:

    image (C, H, W) in [0, 1] -> conv5x5/2 (32) -> BN -> ReLU -> conv5x5/2 (64) -> BN -> ReLU
    -> conv3x3/2 (128) -> BN -> ReLU -> global average pool -> 128-d features -> linear -> logits

(3 stride-2 convolutions: any H, W >= 8; receptive field 21 pixels; batch normalisation, Ioffe &
Szegedy 2015, lets a few epochs at a high learning rate converge). It is trained with Adam and a
one-cycle learning-rate schedule on cross-entropy for 5 epochs on one CPU thread (4,000 MNIST
images: 97% test accuracy), then cached in the genmodels cache folder (``datasets.cache_dir()``:
``$GENMODELS_CACHE``, default ``~/.cache/genmodels``) under ``feature_nets/<key>/``, where the key
is a SHA-256 of the training images, their labels, the image shape and the training configuration;
weights are safetensors and the configuration JSON (``genmodels.checkpoint``), never pickle.

Unlabelled data: no classifier can be trained, so ``random_feature_net`` gives the same
architecture with its seeded random initialisation; Naeem et al. (2020, section 5) show that random
embeddings still rank generative models sensibly for precision/recall/density/coverage. Numbers in
that space are not comparable with numbers in a trained feature space; ``FeatureNet.trained`` says
which one was used.

References:
    | GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium (Heusel et al., 2017)
    | https://arxiv.org/abs/1706.08500
    | Demystifying MMD GANs (Bińkowski et al., 2018), https://arxiv.org/abs/1801.01401
    | Reliable Fidelity and Diversity Metrics for Generative Models (Naeem et al., 2020)
    | https://arxiv.org/abs/2002.09797

Example::

    >>> net = feature_net_for(train_images, train_labels)        # trains once, then loads from cache
    >>> net.features(test_images).shape, net.accuracy(test_images, test_labels)
    ((1000, 128), 0.97)
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .. import checkpoint
from ..codecs.image import ImageCodec
from ..core import check_float, check_int, check_widths
from ..datasets import cache_dir
from ..errors import CheckpointError, ConfigError, DataError

VERSION = 1                      # bump when the architecture or training changes: old cache entries are ignored
KIND = "feature_net"
DEFAULTS: dict[str, Any] = {"widths": (32, 64, 128), "epochs": 5, "lr": 1e-2, "batch_size": 128, "seed": 0}


# --------------------------------------------------------------------------- raw images
def as_images(data: Any, name: str = "images") -> tuple[np.ndarray, np.ndarray | None]:
    """``data`` as (uint8 images (n, H, W, C), labels (n,) or None).

    Takes whatever the image codec takes (``ImageCodec.coerce``): an ``Images``, a uint8 array
    (n, H, W) or (n, H, W, C) with C in {1, 3}, an ``(array, labels)`` pair, a folder of images.
    Labels are returned as given (integers, -1 for "no label", or class names).
    """
    try:
        imgs = ImageCodec.coerce(data)
    except DataError as e:
        raise DataError(f"{name}: {e}") from None
    x = imgs.images if imgs.images.ndim == 4 else imgs.images[..., None]
    return x, None if imgs.labels is None else np.asarray(imgs.labels)


def _has_label(labels: np.ndarray) -> np.ndarray:
    """Mask of the labelled entries: integer labels >= 0, other labels not None/NaN."""
    if np.issubdtype(labels.dtype, np.integer):
        return labels >= 0
    if np.issubdtype(labels.dtype, np.floating):
        return ~np.isnan(labels)
    return np.array([v is not None and not (isinstance(v, float) and math.isnan(v)) for v in labels], dtype=bool)


def n_classes(labels: np.ndarray | None) -> int:
    """Number of distinct labels among the labelled entries (0 for None)."""
    return 0 if labels is None else len(np.unique(labels[_has_label(labels)]))


def to_tensor(images: np.ndarray) -> Tensor:
    """uint8 (n, H, W, C) -> float32 (n, C, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).float().div_(255.0)


# --------------------------------------------------------------------------- the network
class FeatureNet(nn.Module):
    """Three stride-2 convolutions, global average pooling (the features), a linear classifier.

    ``info`` records how it was made: {"trained", "train_accuracy", "epochs", "seconds", "key", ...}.
    """

    def __init__(self, in_channels: int, n_classes: int, widths: Sequence[int] = DEFAULTS["widths"]):
        super().__init__()
        in_channels = check_int("in_channels", in_channels, 1)
        n_classes = check_int("n_classes", n_classes, 1)
        widths = check_widths("widths", widths)
        if len(widths) != 3:
            raise ConfigError(f"widths must hold 3 channel counts (one per convolution), got {widths}")
        self.config = {"in_channels": in_channels, "n_classes": n_classes, "widths": widths}
        w0, w1, w2 = widths
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, w0, 5, stride=2, padding=2), nn.BatchNorm2d(w0), nn.ReLU(),   # (B, w0, H/2, W/2)
            nn.Conv2d(w0, w1, 5, stride=2, padding=2), nn.BatchNorm2d(w1), nn.ReLU(),            # (B, w1, H/4, W/4)
            nn.Conv2d(w1, w2, 3, stride=2, padding=1), nn.BatchNorm2d(w2), nn.ReLU(),            # (B, w2, H/8, W/8)
        )
        self.head = nn.Linear(w2, n_classes)
        self.info: dict[str, Any] = {"trained": False}

    @property
    def dim(self) -> int:
        return self.config["widths"][-1]

    @property
    def trained(self) -> bool:
        return bool(self.info.get("trained", False))

    def embed(self, x: Tensor) -> Tensor:
        """(B, C, H, W) in [0, 1] -> (B, dim) features (global average of the last ReLU maps)."""
        return self.body(x).mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.embed(x))                                       # (B, K) logits

    def _check(self, images: np.ndarray) -> None:
        if images.shape[-1] != self.config["in_channels"]:
            raise DataError(f"the feature net was built for {self.config['in_channels']}-channel images, "
                            f"got {images.shape[-1]} channels")
        shape = self.info.get("image_shape")
        if shape is not None and tuple(images.shape[1:]) != tuple(shape):
            raise DataError(f"the feature net was trained on images of shape {tuple(shape)} (H, W, C), "
                            f"got {tuple(images.shape[1:])}")

    @torch.no_grad()
    def _map(self, images: Any, fn, batch_size: int) -> np.ndarray:
        x, _ = as_images(images)
        self._check(x)
        was = self.training
        self.eval()
        try:
            dev = next(self.parameters()).device
            out = [fn(to_tensor(x[i:i + batch_size]).to(dev)).cpu() for i in range(0, len(x), batch_size)]
        finally:
            self.train(was)
        return torch.cat(out).numpy()

    def features(self, images: Any, batch_size: int = 512) -> np.ndarray:
        """Penultimate-layer features of uint8 images: float64 (n, dim)."""
        return self._map(images, self.embed, batch_size).astype(np.float64)

    def predict(self, images: Any, batch_size: int = 512) -> np.ndarray:
        """Predicted class of each image: int64 (n,)."""
        return self._map(images, lambda t: self(t).argmax(1), batch_size).astype(np.int64)

    def accuracy(self, images: Any, labels: Any = None) -> float:
        """Share of the labelled images classified right (a label never seen in training counts as
        wrong; -1 / None means unlabelled and is skipped); ``labels`` default: ``images.labels``."""
        x, y = as_images(images)
        y = y if labels is None else np.asarray(labels)
        if not self.trained or y is None or y.shape != (len(x),):
            raise DataError("accuracy needs a trained feature net and one label per image")
        keep = _has_label(y)
        if not keep.any():
            raise DataError("accuracy needs at least one labelled image")
        lookup = {v: i for i, v in enumerate(self.info["label_values"])}
        target = np.array([lookup.get(v.item() if isinstance(v, np.generic) else v, -1) for v in y[keep]])
        return float((self.predict(x[keep]) == target).mean())


# --------------------------------------------------------------------------- training
def _check_config(config: dict[str, Any]) -> dict[str, Any]:
    unknown = set(config) - set(DEFAULTS)
    if unknown:
        raise ConfigError(f"unknown feature-net option(s) {sorted(unknown)}; use {sorted(DEFAULTS)}")
    c = {**DEFAULTS, **config}
    return {"widths": check_widths("widths", c["widths"]), "epochs": check_int("epochs", c["epochs"], 1),
            "lr": check_float("lr", c["lr"], 0.0, open_low=True),
            "batch_size": check_int("batch_size", c["batch_size"], 1), "seed": check_int("seed", c["seed"], 0)}


def _labelled(images: Any, labels: Any) -> tuple[np.ndarray, np.ndarray, list]:
    """The labelled images, their class indices 0..K-1, and the label value of each index."""
    x, y = as_images(images, "training images")
    y = y if labels is None else np.asarray(labels)
    if y is not None and y.shape != (len(x),):
        raise DataError(f"{len(x)} images but labels of shape {y.shape}; give one label per image")
    if n_classes(y) < 2:
        raise DataError("the feature net is a classifier and needs labelled images of at least 2 classes; "
                        "for unlabelled images use random_feature_net (random features)")
    keep = _has_label(y)                                       # -1 / None: an image without a label
    values = np.unique(y[keep])
    return (x[keep], np.searchsorted(values, y[keep]).astype(np.int64),
            [v.item() if isinstance(v, np.generic) else v for v in values])


def train_feature_net(images: Any, labels: Any = None, **config: Any) -> FeatureNet:
    """Train a FeatureNet on labelled uint8 images (no cache); ``config``: widths, epochs, lr, batch_size, seed.

    Repeatable: initialisation and batch order come from ``seed`` (the global torch RNG is left as it was).
    """
    import time
    cfg = _check_config(config)
    x, y, values = _labelled(images, labels)
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg["seed"])
        net = FeatureNet(x.shape[-1], len(values), cfg["widths"])
        g = torch.Generator().manual_seed(cfg["seed"])
        xt, yt = to_tensor(x), torch.from_numpy(y)                             # (N, C, H, W), (N,)
        opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"])
        steps = cfg["epochs"] * math.ceil(len(x) / cfg["batch_size"])
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg["lr"], total_steps=steps, pct_start=0.2)
        net.train()
        for _ in range(cfg["epochs"]):
            for idx in torch.randperm(len(x), generator=g).split(cfg["batch_size"]):
                if len(idx) < 2:                       # batch norm needs two images (8x8 maps are 1x1 at the end)
                    continue
                loss = nn.functional.cross_entropy(net(xt[idx]), yt[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
    net.eval()
    net.info = {"trained": True, "image_shape": list(x.shape[1:]), "n_train": len(x), "label_values": values,
                **cfg, "seconds": time.perf_counter() - start}
    net.info["train_accuracy"] = net.accuracy(x, np.asarray(values, dtype=object)[y])
    return net


def random_feature_net(image_shape: Sequence[int], widths: Sequence[int] = DEFAULTS["widths"],
                       seed: int = 0) -> FeatureNet:
    """The FeatureNet architecture at its seeded random initialisation, for unlabelled images.

    ``image_shape`` is (H, W, C). References: Naeem et al. (2020), section 5 (random embeddings).
    """
    shape = [int(s) for s in image_shape]
    if len(shape) != 3:
        raise ConfigError(f"image_shape must be (H, W, C), got {image_shape!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(check_int("seed", seed, 0))
        net = FeatureNet(shape[2], 1, widths)
    net.eval()
    net.info = {"trained": False, "image_shape": shape, "seed": int(seed), "widths": list(net.config["widths"])}
    return net


# --------------------------------------------------------------------------- cache
def cache_key(images: np.ndarray, labels: np.ndarray, values: list, config: dict[str, Any]) -> str:
    """SHA-256 of the images (bytes and shape), labels (class indices and their values) and configuration."""
    h = hashlib.sha256()
    h.update(json.dumps({"kind": KIND, "version": VERSION, "shape": list(images.shape), "config": config,
                         "label_values": values}, sort_keys=True).encode())
    h.update(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
    h.update(np.ascontiguousarray(labels, dtype="<i8").tobytes())
    return h.hexdigest()


def save_feature_net(net: FeatureNet, folder: str | os.PathLike) -> Path:
    """Write ``net`` as safetensors + config.json (``genmodels.checkpoint``)."""
    return checkpoint.save(folder, {"kind": KIND, "feature_net_version": VERSION, "net": net.config, "info": net.info},
                           {"weights": net.state_dict()})


def load_feature_net(folder: str | os.PathLike) -> FeatureNet:
    """Read a FeatureNet saved by ``save_feature_net``; CheckpointError if it is missing or corrupt."""
    cfg = checkpoint.read_config(folder)
    if cfg.get("kind") != KIND or cfg.get("feature_net_version") != VERSION:
        raise CheckpointError(f"{folder} is not a version-{VERSION} genmodels feature net")
    net = FeatureNet(**cfg["net"])
    try:
        net.load_state_dict(checkpoint.load(folder, "weights"))
    except RuntimeError as e:                              # shapes that do not match the config
        raise CheckpointError(f"{folder} holds weights that do not fit its config ({e})") from None
    net.info = cfg["info"]
    return net.eval()


def feature_net_for(images: Any, labels: Any = None, *, cache: bool = True, **config: Any) -> FeatureNet:
    """The FeatureNet of these labelled training images: loaded from the cache when trained before,
    else trained (``train_feature_net``) and cached. ``info["cached"]`` says whether it was loaded.

    The cache entry appears atomically (written to a temporary folder, then renamed), so concurrent
    processes never see half an entry; an unreadable entry is retrained and replaced.
    """
    cfg = _check_config(config)
    x, y, values = _labelled(images, labels)
    key = cache_key(x, y, values, cfg)
    folder = cache_dir() / "feature_nets" / key[:32]
    if cache and folder.exists():
        try:
            net = load_feature_net(folder)
            if net.info.get("key") == key:
                net.info["cached"] = True
                return net
        except CheckpointError:
            pass
        shutil.rmtree(folder, ignore_errors=True)          # stale or corrupt: replace it
    net = train_feature_net(x, np.asarray(values, dtype=object)[y], **cfg)
    net.info.update(key=key, cached=False)
    if cache:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".tmp-"))
        try:
            save_feature_net(net, tmp)
            os.rename(tmp, folder)                         # atomic; fails if another process got there first
        except OSError:
            pass
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return net
