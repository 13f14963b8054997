"""PixelCNN: an autoregressive image model with an exact discrete likelihood.

The image's pixels are factorised in raster order, all C channels of a pixel at once:

    P(pixels | y) = prod_{i, j} P(pixel_{ij} | pixels before (i, j), y),

where y is the class label (K > 0). Each factor is a PixelCNN++ discretized mixture of logistics
over the 256 8-bit values with ``n_mixtures`` components; for RGB the locations of green and blue
are linear in the values of red (and green) of the same pixel, so the C channels are dependent
(``nets.discretized``). Every factor is normalised over the 256^C values of its pixel, hence the
product is an exact, normalised mass over images: ``likelihood = "exact"``.

The network is a gated PixelCNN (van den Oord et al., 2016: vertical and horizontal stacks, no blind
spot, gated tanh-sigmoid units) whose gates get a learned class-embedding bias
(``nets.pixelcnn``); unlabelled images (label -1) use an extra "no label" embedding.

Units (the image contract). ``log_prob`` returns log P(pixels) + D log 256 (D = C H W), so that the
image codec's log_det = -D log 256 leaves the user with log P(pixels) in nats per image; bits per
dimension are -log P / (D ln 2). ``loss`` is -log P(pixels) / D, nats per dimension, averaged over
the batch. The network reads the integer pixels (``batch["pixels"]``), not the dequantized x.

Sampling: ``sample(n)`` draws the n images as one batch, pixel by pixel (the channels of a pixel
together from the coupled mixture), with the given generator. The vertical stack runs once per row
on the band of rows it can see and the horizontal stack once per pixel on one row
(``nets.pixelcnn``): about 25 full-network passes' worth of work per 28x28 image instead of 784
(a few seconds for 100 images on one CPU thread, but H W = 784 small sequential steps). Without a
condition, labels are drawn from the training class frequencies (kept by ``prepare``; uniform
before it); ``condition={"label": ...}`` samples given a class. ``temperature`` (default 1)
multiplies the logistic scales, for sharper (< 1) samples; only 1 samples the model itself.

References:
    | Pixel Recurrent Neural Networks (van den Oord, Kalchbrenner, Kavukcuoglu, 2016)
    | https://arxiv.org/abs/1601.06759
    | Conditional Image Generation with PixelCNN Decoders (van den Oord et al., 2016)
    | https://arxiv.org/abs/1606.05328
    | PixelCNN++ (Salimans, Karpathy, Chen, Kingma, 2017) https://arxiv.org/abs/1701.05517

Example:
    >>> spec = Spec(event_shape=(1, 8, 8), extra={"n_classes": 10})
    >>> model = PixelCNN(spec, channels=16, n_layers=3, n_mixtures=3)
    >>> out = model.sample(4, condition={"label": torch.tensor([3, 3, 7, 7])},
    ...                    generator=torch.Generator().manual_seed(0))
    >>> out["x"].shape                       # (pixels + 0.5) / 256
    torch.Size([4, 1, 8, 8])
"""
from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..core import Batch, GenerativeModule, Likelihood, Spec, check_float, check_int
from ..errors import ConfigError
from ..nets.conv import (LabelEmbedding, check_label_condition, class_counts, draw_labels, image_batch,
                         image_shape, n_classes)
from ..nets.discretized import (MIN_LOG_SCALE, discretized_mix_logistic_log_prob,
                                discretized_mix_logistic_sample, log_mass_offset, mixture_n_params,
                                pixels_to_unit)
from ..nets.pixelcnn import GatedPixelCNN

EVAL_CHUNK = 64           # images per forward pass when no gradient is needed


def _check_odd(name: str, value: object, low: int) -> int:
    k = check_int(name, value, low)
    if k % 2 == 0:
        raise ConfigError(f"{name} must be odd (a centred kernel), got {k}")
    return k


class PixelCNN(GenerativeModule):
    """Class-conditional gated PixelCNN with a discretized logistic mixture per pixel; exact log P(pixels).

    Arguments:
        spec: the codec's description of the images: event_shape (C, H, W), extra["n_classes"] = K.
        channels: feature maps of the vertical and horizontal stacks.
        n_layers: gated layers (>= 1).
        kernel_size: odd kernel of the gated layers (>= 3).
        first_kernel: odd kernel of the input layer (>= 3).
        n_mixtures: logistic components per pixel.
        embed_dim: width of the class embedding (unused when K = 0).
    """

    likelihood: ClassVar[Likelihood] = "exact"
    exact_on_discrete: ClassVar[bool] = True          # log_prob is the mass of the 8-bit pixels (+ D log 256)
    closed_form: ClassVar[bool] = False
    conditional: ClassVar[bool] = True
    modalities: ClassVar[tuple[str, ...]] = ("image",)
    # measured on MNIST-5k, 5.5 min on one thread: batch 32 / lr 2e-3 reached 1.33 bits/dim; the loop's
    # default batch (256 for 4,000 images) takes too few steps in a CPU budget
    train_defaults: ClassVar[dict[str, Any]] = {"batch_size": 32, "lr": 2e-3}

    def __init__(self, spec: Spec, channels: int = 32, n_layers: int = 6, kernel_size: int = 3,
                 first_kernel: int = 7, n_mixtures: int = 5, embed_dim: int = 32):
        shape, K = image_shape(spec, "pixelcnn"), n_classes(spec)
        cfg = dict(channels=check_int("channels", channels, 1), n_layers=check_int("n_layers", n_layers, 1),
                   kernel_size=_check_odd("kernel_size", kernel_size, 3),
                   first_kernel=_check_odd("first_kernel", first_kernel, 3),
                   n_mixtures=check_int("n_mixtures", n_mixtures, 1), embed_dim=check_int("embed_dim", embed_dim, 1))
        super().__init__(spec, **cfg)
        self.shape, self.K = shape, K
        C = shape[0]
        self.embed = LabelEmbedding(K, cfg["embed_dim"]) if K > 0 else None
        self.net = GatedPixelCNN(C, mixture_n_params(C, cfg["n_mixtures"]), channels=cfg["channels"],
                                 n_layers=cfg["n_layers"], kernel_size=cfg["kernel_size"],
                                 first_kernel=cfg["first_kernel"], cond_dim=cfg["embed_dim"] if K > 0 else 0)
        counts = torch.ones(K + 1)
        counts[K] = 0.0 if K > 0 else 1.0                 # no classes: every draw is "no label"
        self.register_buffer("class_counts", counts)

    # -- set-up ----------------------------------------------------------------------------------

    def prepare(self, train: Batch) -> None:
        """Keep the training class frequencies (unconditional sampling draws labels from them)."""
        _, _, label = image_batch(train, self.shape, self.K, torch.device("cpu"))
        counts = class_counts(label, self.K) if self.K > 0 else torch.ones(1)
        self.class_counts.copy_(counts.to(self.class_counts))

    # -- the network -----------------------------------------------------------------------------

    def params(self, pixels: Tensor, label: Tensor) -> Tensor:
        """Mixture parameters (B, P, H', W') for integer pixels (B, C, H', W') (any H' <= H rows) and labels."""
        cond = self.embed(label) if self.embed is not None else None
        return self.net(pixels_to_unit(pixels, self.net.head[-1].weight.dtype), cond)

    def pixel_log_prob(self, batch: Batch) -> Tensor:
        """log P(pixel_ij | pixels before it, label) for every pixel: (B, H, W), nats."""
        _, pixels, label = image_batch(batch, self.shape, self.K, self.device, need_pixels=True)
        M = self.config["n_mixtures"]
        if torch.is_grad_enabled() or pixels.shape[0] <= EVAL_CHUNK:
            return discretized_mix_logistic_log_prob(pixels, self.params(pixels, label), M)
        # scoring many images: chunks keep the feature maps in cache (several times faster on CPU)
        return torch.cat([discretized_mix_logistic_log_prob(p, self.params(p, y), M)
                          for p, y in zip(pixels.split(EVAL_CHUNK), label.split(EVAL_CHUNK))])

    # -- the GenerativeModule interface ----------------------------------------------------------

    def loss(self, batch: Batch) -> Tensor:
        """-log P(pixels) / D: nats per dimension, averaged over the batch."""
        D = math.prod(self.shape)
        return -self.pixel_log_prob(batch).sum(dim=(1, 2)).mean() / D

    def log_prob(self, batch: Batch) -> Tensor:
        """log P(pixels | label) + D log 256, (B,): the codec's -D log 256 turns it into log P(pixels)."""
        return self.pixel_log_prob(batch).sum(dim=(1, 2)) + log_mass_offset(math.prod(self.shape))

    @torch.no_grad()
    def sample(self, n: int, *, condition: Batch | None = None, generator: torch.Generator | None = None,
               temperature: float = 1.0) -> Batch:
        """n images {"x": (pixels + 0.5) / 256, (n, C, H, W)}, drawn pixel by pixel with ``generator``.

        condition: {"label": LongTensor (n,)} (or one label for all); None draws labels from the
        training class frequencies. temperature: multiplies the logistic scales (1 = the model)."""
        n = check_int("n", n, 1)
        temperature = check_float("temperature", temperature, 0.0, open_low=True)
        if condition is not None:
            label = check_label_condition(condition, n, self.K, "pixelcnn", self.device)
        else:
            label = draw_labels(self.class_counts, n, generator, self.device)
        C, H, W = self.shape
        M = self.config["n_mixtures"]
        pixels = torch.zeros((n, C, H, W), dtype=torch.long, device=self.device)
        cond = self.embed(label) if self.embed is not None else None
        dtype = self.net.head[-1].weight.dtype
        was_training = self.training
        self.eval()
        for i in range(H):
            vh = self.net.vertical_row(pixels_to_unit(pixels, dtype), i, cond)      # row i sees rows < i
            for j in range(W):
                row = pixels_to_unit(pixels[:, :, i:i + 1, :j + 1], dtype)          # columns <= j of row i
                p = self.net.horizontal(row, [t[..., :j + 1] for t in vh])[:, :, 0, j]   # (n, P)
                if temperature != 1.0:
                    p = p.clone()
                    ls = p[:, M + M * C:M + 2 * M * C]               # log scales (see nets.discretized)
                    p[:, M + M * C:M + 2 * M * C] = torch.clamp(ls, min=MIN_LOG_SCALE) + math.log(temperature)
                pixels[:, :, i, j] = discretized_mix_logistic_sample(p, C, M, generator)
        self.train(was_training)
        return {"x": (pixels.float() + 0.5) / 256.0}
