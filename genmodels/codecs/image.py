"""The image codec: uint8 pictures (a folder of PNG/JPEG, an array, a built-in set) <-> pixel tensors.

Raw data is an :class:`Images` (a uint8 array (n, H, W) for grayscale or (n, H, W, C), optional
labels and class names). A plain uint8 array, an ``(array, labels)`` pair and a folder path are
accepted too. A folder holds image files, or one sub-folder of image files per class (as
torchvision's ImageFolder; the class names are the sub-folder names, sorted).

What a module sees (design.md, section 1; ``Spec.event_shape = (C, H, W)``,
``Spec.extra["n_classes"] = K``, 0 without labels)::

    batch["pixels"] uint8 (B, C, H, W)   the 8-bit values
    batch["label"]  int64 (B,)           class in [0, K), or -1 where there is no label
    batch["x"]      float (B, C, H, W)   (pixels + u) / 256, u ~ U[0, 1): added by ``dequantize``

Likelihood convention: a module's ``log_prob`` is a density of x over [0, 1)^D (D = C H W), so
``log_det = -D log 256`` turns it into nats per image in 8-bit pixel units. For a continuous density
that is a lower bound on log P(pixels) (uniform dequantization, Theis et al. 2016); a module whose
log_prob is the exact mass of the pixels (PixelCNN) returns log P + D log 256 and sets
``exact_on_discrete``. Bits per dimension = -log_prob / (D ln 2).

Samples come back as uint8 arrays in the layout the training data came in: (n, H, W) for
grayscale given so, (n, H, W, C) otherwise.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ..core import Batch, Spec
from ..errors import ConfigError, DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
_LOG_256 = math.log(256.0)


@dataclass
class Images:
    """Images with optional labels: ``images`` uint8 (n, H, W) or (n, H, W, C); ``labels`` (n,) or None;
    ``classes`` the name of each label value (a folder's sub-folders), or None."""

    images: np.ndarray
    labels: np.ndarray | None = None
    classes: list | None = None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, idx: Any) -> "Images":
        idx = np.arange(len(self))[idx] if isinstance(idx, slice) else np.asarray(idx)
        return Images(self.images[idx], None if self.labels is None else self.labels[idx], self.classes)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.images.shape

    def __repr__(self) -> str:
        lab = "no labels" if self.labels is None else f"{len(np.unique(self.labels))} classes"
        return f"Images({len(self)} x {'x'.join(map(str, self.images.shape[1:]))} uint8, {lab})"


# ---------------------------------------------------------------------------- reading
def _check_array(a: Any) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim not in (3, 4):
        raise DataError(f"images must be an array (n, H, W) or (n, H, W, C); got shape {a.shape}")
    if a.ndim == 4 and a.shape[-1] not in (1, 3):
        hint = " (channels first? use a.transpose(0, 2, 3, 1))" if a.shape[1] in (1, 3) else ""
        raise DataError(f"images of shape {a.shape} have {a.shape[-1]} channels in the last axis; "
                        f"1 (grayscale) or 3 (RGB) are supported{hint}")
    if a.dtype != np.uint8:
        if not np.issubdtype(a.dtype, np.integer) or (a.size and (a.min() < 0 or a.max() > 255)):
            raise DataError(f"images must hold 8-bit values (uint8, 0..255); got dtype {a.dtype}"
                            + ("" if np.issubdtype(a.dtype, np.integer) else
                               "; for floats in [0, 1] pass (a * 255).round().astype(np.uint8)"))
        a = a.astype(np.uint8)
    if len(a) == 0:
        raise DataError("no images: the array is empty")
    return a


def _image_files(folder: Path) -> list[Path]:
    """Image files of a folder (hidden files skipped); anything else is a DataError naming it."""
    files = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_dir():
            raise DataError(f"{folder} mixes image files and sub-folders ({p.name}/); put every image in a "
                            f"class sub-folder, or none")
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            raise DataError(f"{p} is not an image file (expected {', '.join(sorted(IMAGE_SUFFIXES))}); "
                            f"remove it from the folder")
        files.append(p)
    return files


def read_folder(path: str | os.PathLike, size: tuple[int, int] | None = None, mode: str = "auto") -> Images:
    """A folder of images, or of class sub-folders of images, as :class:`Images`.

    size: (H, W) to resize every image to (bilinear); None requires all images to share one size.
    mode: "L" (grayscale), "RGB", or "auto" (grayscale when every file is, else RGB).
    """
    from PIL import Image, UnidentifiedImageError

    folder = Path(path)
    if not folder.is_dir():
        raise DataError(f"{str(folder)!r} is not a folder of images")
    entries = [p for p in sorted(folder.iterdir()) if not p.name.startswith(".")]
    subdirs = [p for p in entries if p.is_dir()]
    if subdirs:
        stray = [p.name for p in entries if not p.is_dir()]
        if stray:
            raise DataError(f"{folder} has class sub-folders and also the files {stray[:3]}; move every image "
                            f"into a class sub-folder")
        groups = [(d.name, _image_files(d)) for d in subdirs]
        classes = [name for name, _ in groups]
    else:
        groups, classes = [(None, _image_files(folder))], None
    files = [(f, k) for k, (_, fs) in enumerate(groups) for f in fs]
    if not files:
        raise DataError(f"{folder} holds no image files (PNG/JPEG); add images or check the path")
    pics, sizes = [], {}
    for f, _ in files:
        try:
            with Image.open(f) as im:
                im.load()
                pics.append(im.copy())
        except (UnidentifiedImageError, OSError) as e:
            raise DataError(f"{f} could not be read as an image ({e}); remove or fix it") from None
        sizes.setdefault(pics[-1].size[::-1], f.name)
    if size is None and len(sizes) > 1:
        shown = ", ".join(f"{h}x{w} ({name})" for (h, w), name in list(sizes.items())[:4])
        raise DataError(f"the images in {folder} have different sizes: {shown}; resize them, or pass "
                        f"codec={{'size': (H, W)}} (CLI: --image-size HxW) to resize on reading")
    if mode not in ("auto", "L", "RGB"):
        raise ConfigError(f"mode must be 'auto', 'L' or 'RGB', got {mode!r}")
    if mode == "auto":
        mode = "L" if all(p.mode in ("1", "L", "I;16", "I", "LA") for p in pics) else "RGB"
    out = []
    for p in pics:
        p = p.convert(mode)
        if size is not None and p.size != (size[1], size[0]):
            p = p.resize((size[1], size[0]), Image.BILINEAR)
        out.append(np.asarray(p, dtype=np.uint8))
    labels = np.array([k for _, k in files], dtype=np.int64) if classes else None
    return Images(np.stack(out), labels, classes)


def write_png(images: np.ndarray, folder: str | os.PathLike, prefix: str = "sample") -> list[Path]:
    """Write each uint8 image (n, H, W[, C]) to ``folder/prefix_00000.png``; returns the paths."""
    from PIL import Image
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, im in enumerate(images):
        p = out / f"{prefix}_{i:05d}.png"
        Image.fromarray(im[..., 0] if im.ndim == 3 and im.shape[-1] == 1 else im).save(p)
        paths.append(p)
    return paths


def grid(images: np.ndarray, ncol: int | None = None, pad: int = 2) -> np.ndarray:
    """The images tiled into one uint8 picture (ncol columns; a ``pad``-pixel white border)."""
    a = images if images.ndim == 4 else images[..., None]
    n, h, w, c = a.shape
    ncol = ncol or int(math.ceil(math.sqrt(n)))
    nrow = int(math.ceil(n / ncol))
    out = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i in range(n):
        r, k = divmod(i, ncol)
        out[pad + r * (h + pad): pad + r * (h + pad) + h, pad + k * (w + pad): pad + k * (w + pad) + w] = a[i]
    return out[..., 0] if c == 1 else out


def save_grid(images: np.ndarray, path: str | os.PathLike, ncol: int | None = None) -> Path:
    from PIL import Image
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid(images, ncol)).save(p)
    return p


# ---------------------------------------------------------------------------- the codec
class ImageCodec:
    """uint8 images <-> pixel tensors; learns the size, channels, layout and class labels."""

    modality: ClassVar[str] = "image"

    def __init__(self, size: tuple[int, int] | list[int] | None = None, mode: str = "auto"):
        if size is not None and (len(size) != 2 or any(not isinstance(v, (int, np.integer)) or v < 1 for v in size)):
            raise ConfigError(f"size must be (H, W) with positive integers, got {size!r}")
        if mode not in ("auto", "L", "RGB"):
            raise ConfigError(f"mode must be 'auto', 'L' or 'RGB', got {mode!r}")
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.mode = mode

    # ---- recognising and reading raw data
    @staticmethod
    def accepts(raw: Any) -> bool:
        if isinstance(raw, Images):
            return True
        if isinstance(raw, (str, os.PathLike)):
            return str(raw) != "" and Path(raw).is_dir()     # "" is an empty text, not the current folder
        if isinstance(raw, tuple) and len(raw) == 2:
            return ImageCodec.accepts(raw[0])
        return isinstance(raw, np.ndarray) and raw.ndim in (3, 4)

    @staticmethod
    def coerce(raw: Any) -> Images:
        if isinstance(raw, Images):
            imgs = Images(_check_array(raw.images), raw.labels, raw.classes)
        elif isinstance(raw, (str, os.PathLike)):
            imgs = read_folder(raw)
        elif isinstance(raw, tuple) and len(raw) == 2:
            imgs = Images(_check_array(raw[0]), np.asarray(raw[1]))
        else:
            imgs = Images(_check_array(raw))
        if imgs.labels is not None:
            labels = np.asarray(imgs.labels)
            if labels.shape != (len(imgs),):
                raise DataError(f"{len(imgs)} images but labels of shape {labels.shape}; give one label per image")
            imgs.labels = labels
        return imgs

    def _read(self, raw: Any) -> Images:
        """Like ``coerce``, with this codec's size and mode applied to folders."""
        if isinstance(raw, (str, os.PathLike)) and Path(raw).is_dir():
            return read_folder(raw, size=self.size, mode=self.mode)
        return self.coerce(raw)

    def fit(self, raw: Any) -> "ImageCodec":
        imgs = self._read(raw)
        a = imgs.images
        self.layout_ = "hw" if a.ndim == 3 else "hwc"
        self.shape_ = (1 if a.ndim == 3 else int(a.shape[-1]), int(a.shape[1]), int(a.shape[2]))   # (C, H, W)
        if imgs.labels is None:
            self.classes_ = []
        else:
            values = np.unique(imgs.labels)
            names = imgs.classes
            self.classes_ = [(names[int(v)] if names is not None and np.issubdtype(values.dtype, np.integer)
                              and 0 <= v < len(names) else v.item()) for v in values]
            self.label_values_ = [v.item() for v in values]
            self.class_counts_ = [int((imgs.labels == v).sum()) for v in values]
        return self

    @property
    def label_log_prior(self) -> torch.Tensor | None:
        """log of each class's share of the training images (None without labels): scoring an unlabelled
        image with a class-conditional model gives log p(x) = logsumexp_k [log p(x | k) + log pi_k]."""
        if not self.classes_:
            return None
        counts = torch.tensor(self.class_counts_, dtype=torch.float64)
        return counts.log() - counts.sum().log()

    def _check_fitted(self) -> None:
        if not hasattr(self, "shape_"):
            raise ConfigError("the image codec is not fitted; call fit(images) first")

    def spec(self) -> Spec:
        self._check_fitted()
        return Spec(event_shape=self.shape_, extra={"n_classes": len(self.classes_)})

    @property
    def n_dims(self) -> int:
        return int(np.prod(self.shape_))

    @property
    def bound_reasons(self) -> list[str]:
        return ["8-bit pixels are uniformly dequantized: a density of the dequantized pixels is a lower bound "
                "on the log-probability of the pixels"]

    def describe(self, shape: tuple[int, ...]) -> str:
        c, h, w = shape
        return f"{h}x{w} {'grayscale' if c == 1 else 'RGB'}"

    def check_columns(self, raw: Any) -> Images:
        """The raw images, checked to have the training size and channels."""
        self._check_fitted()
        imgs = self._read(raw)
        a = imgs.images
        shape = (1 if a.ndim == 3 else int(a.shape[-1]), int(a.shape[1]), int(a.shape[2]))
        if shape != self.shape_:
            raise DataError(f"the model was trained on {self.describe(self.shape_)} images; these are "
                            f"{self.describe(shape)}; convert or resize them first (a folder can be read with "
                            f"codec={{'size': ..., 'mode': ...}})")
        return imgs

    def _label_index(self, values: np.ndarray) -> np.ndarray:
        """Label values -> class indices; DataError for a value never seen in training."""
        lookup = {v: i for i, v in enumerate(self.label_values_)}
        out = np.empty(len(values), dtype=np.int64)
        for j, v in enumerate(values):
            key = v.item() if isinstance(v, np.generic) else v
            if key not in lookup:
                names = [str(c) for c in self.classes_]
                known = (f"the classes {names} (labels {self.label_values_})"
                         if names != [str(v) for v in self.label_values_] else f"{self.label_values_}")
                raise DataError(f"class label {key!r} was never seen in training; the model knows {known}")
            out[j] = lookup[key]
        return out

    def encode(self, raw: Any) -> Batch:
        imgs = self.check_columns(raw)
        a = imgs.images if imgs.images.ndim == 4 else imgs.images[..., None]
        pixels = torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))
        n = len(a)
        label = torch.full((n,), -1, dtype=torch.long)
        if imgs.labels is not None and self.classes_:
            label = torch.from_numpy(self._label_index(imgs.labels))
        return {"pixels": pixels, "label": label, "log_w": torch.zeros(n, dtype=torch.float64)}

    def dequantize(self, batch: Batch, generator: torch.Generator | None = None) -> Batch:
        p = batch["pixels"]
        u = torch.rand(p.shape, generator=generator, device=p.device)
        # (255 + u) / 256 rounds to 1.0 in float32 when u is within 2^-17 of 1: keep x inside [0, 1)
        return {**batch, "x": ((p.float() + u) / 256.0).clamp_(max=1.0 - 2.0 ** -24)}

    def log_det(self, batch: Batch) -> torch.Tensor:
        n = batch["pixels"].shape[0]
        return torch.full((n,), -self.n_dims * _LOG_256, dtype=torch.float64, device=batch["pixels"].device)

    def decode(self, batch: Batch, generator: torch.Generator | None = None) -> np.ndarray:
        x = batch["x"].detach().float().cpu()
        pixels = torch.clamp(torch.floor(x * 256.0), 0, 255).to(torch.uint8).numpy().transpose(0, 2, 3, 1)
        return np.ascontiguousarray(pixels[..., 0] if self.layout_ == "hw" else pixels)

    # ---- conditions
    def encode_condition(self, condition: dict[str, Any]) -> Batch:
        self._check_fitted()
        unknown = [k for k in condition if k != "label"]
        if unknown:
            raise ConfigError(f"image models condition only on 'label', not {unknown}")
        if not self.classes_:
            raise ConfigError("this model was trained without labels, so it cannot sample a given class; "
                              "fit it on labelled images (an Images with labels, or class sub-folders)")
        value = condition["label"]
        if isinstance(value, str) and value not in self.label_values_ and value not in self.classes_ \
                and value.lstrip("-").isdigit():
            value = int(value)                                   # the CLI's text "7" for the integer label 7
        if isinstance(value, str) and value in self.classes_ and value not in self.label_values_:
            idx = self.classes_.index(value)                     # a class name (a sub-folder's, "7" of digits)
        else:
            idx = int(self._label_index(np.array([value], dtype=object))[0])
        return {"label": torch.tensor([idx], dtype=torch.long)}

    def apply_condition(self, out: np.ndarray, condition: dict[str, Any]) -> np.ndarray:
        return out

    # ---- persistence
    def state(self) -> dict:
        self._check_fitted()
        return {"size": self.size, "mode": self.mode, "layout": self.layout_, "shape": list(self.shape_),
                "classes": list(self.classes_), "label_values": list(getattr(self, "label_values_", [])),
                "class_counts": list(getattr(self, "class_counts_", []))}

    @classmethod
    def from_state(cls, state: dict) -> "ImageCodec":
        codec = cls(size=state["size"], mode=state["mode"])
        codec.layout_ = state["layout"]
        codec.shape_ = tuple(int(v) for v in state["shape"])
        codec.classes_ = list(state["classes"])
        if state["label_values"]:
            codec.label_values_ = list(state["label_values"])
            codec.class_counts_ = [int(v) for v in state["class_counts"]]
        return codec
