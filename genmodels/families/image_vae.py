"""ImageVAE: a convolutional, class-conditional VAE with a discretized logistic (or Bernoulli) decoder.

Encoder q(z | x, y) = N(mu, diag sigma^2): stride-2 3x3 convolutions with GroupNorm and SiLU
(``nets.conv.ConvEncoder``) read the image scaled to [-1, 1]; the flattened features and the class
embedding e(y) go through a linear layer to (mu, log sigma). Decoder: z and e(y) through a linear
layer to a small grid, then upsampling convolutions with class-conditional GroupNorm up to the image
size (``nets.conv.ConvDecoder``; odd sizes cropped). For K = 0 classes there is no embedding;
a label of -1 (an unlabelled image of labelled data) has an embedding of its own. Pixels are
independent given z:

* ``decoder="logistic"`` (default): each 8-bit pixel k has a **discretized logistic** mass
  P(k | z) with a location and a log-scale per pixel and channel (the decoder's 2C output maps),
  on the 256 bins of PixelCNN++ (``nets.discretized.discretized_logistic_log_prob``; edge bins open,
  so the 256 masses sum to one).
* ``decoder="bernoulli"``: for binary images only (every pixel 0 or 255; ``prepare`` raises a
  DataError otherwise): P(255 | z) = sigmoid(logit), P(0 | z) = 1 - sigmoid(logit). An image with
  any other value has probability 0 (``log_prob`` -inf).

The prior is class-conditional too: p(z | y) = N(m_y, diag t_y^2) per class (one more row for "no
label"; N(0, I) at the start, and fixed N(0, I) when K = 0). Its parameters are not trained by
gradient but set in closed form, the M-step that maximises the ELBO over them: m_y and m_y^2 + t_y^2
are running averages (rate ``PRIOR_RATE`` per training batch) of the posterior moments mu and
mu^2 + sigma^2 over the class's images. With N(0, I) for every class, and with a prior learned by
Adam (which moves it about lr per step), a conditional VAE on MNIST put the class into z and ignored
y in the decoder: samples "given" a label were the same for every label after 700 and 1,000 steps.
A narrow prior per class instead pulls each class's posteriors together, so z ~ p(z | y) lands where
images of class y are encoded. So p(pixels | y) = E_{z ~ p(z | y)} prod_i P(k_i | z, y) is a *mass*
over the 256^D images. Training minimises the negative ELBO per image, with beta = 1 and no warm-up
or free bits (with a factorised decoder the latent is always used, so the honest objective is also
the one trained):

    -ELBO = -E_q[log P(pixels | z, y)] + KL(q(z | x, y) || p(z | y))    (one reparametrised draw).

The encoder reads the dequantized x; the decoder scores the integer pixels. ``log_prob`` is the
importance-weighted bound (IWAE, ``iw_samples`` draws, batched)

    L_S = log (1/S) sum_s P(pixels | z_s, y) p(z_s | y) / q(z_s | x, y),   z_s ~ q,

a lower bound on log P(pixels | y) in expectation (tighter as S grows; L_1 is the ELBO), hence
``likelihood = "bound"``. Per the image contract it returns L_S + D log 256 (D = C H W): the codec's
-D log 256 then leaves the bound on log P(pixels) itself, in nats per image.

Sampling draws the label (the ``condition``, or the training class frequencies kept by ``prepare``)
and z ~ p(z | y), then by default an honest **draw** from the decoder's distribution (each pixel from its
discretized logistic / Bernoulli); ``sample(..., mean=True)`` returns each pixel's expected value
instead (the logistic's location rounded to its bin, 255 times the Bernoulli's probability, rounded):
smoother images, no longer samples of the model.

References:
    | Auto-Encoding Variational Bayes (Kingma & Welling, 2014) https://arxiv.org/abs/1312.6114
    | Importance Weighted Autoencoders (Burda et al., 2016) https://arxiv.org/abs/1509.00519
    | Learning Structured Output Representation using Deep Conditional Generative Models (Sohn et al.,
    | 2015), the conditional VAE, https://papers.nips.cc/paper/5775
    | Improved Variational Inference with Inverse Autoregressive Flow (Kingma et al., 2016), the
    | discretized logistic decoder, https://arxiv.org/abs/1606.04934

Example:
    >>> vae = ImageVAE(Spec(event_shape=(1, 8, 8), extra={"n_classes": 10}), latent_dim=4, channels=(8, 16))
    >>> out = vae.sample(4, generator=torch.Generator().manual_seed(0))       # {"x": (4, 1, 8, 8)}
    >>> pixels = (out["x"] * 256).floor().to(torch.uint8)
    >>> vae.log_prob({"x": out["x"], "pixels": pixels, "label": torch.zeros(4, dtype=torch.long)}).shape
    torch.Size([4])
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core import Batch, GenerativeModule, Likelihood, Spec, check_int, check_widths
from ..errors import ConfigError, DataError
from ..nets.conv import (
    ConvDecoder,
    ConvEncoder,
    LabelEmbedding,
    check_label_condition,
    class_counts,
    draw_labels,
    image_batch,
    image_shape,
    n_classes,
)
from ..nets.discretized import (
    discretized_logistic_log_prob,
    discretized_logistic_sample,
    log_mass_offset,
)

DECODERS = ("logistic", "bernoulli")
PRIOR_RATE = 0.05            # running-average rate of the class priors' moments per training batch
MIN_PRIOR_VAR = 1e-4         # floor on the prior's variances
ROWS_PER_PASS = 2 ** 18       # pixels * images decoded at once by the IWAE bound (bounds memory)
_LOG_2PI = math.log(2 * math.pi)


class ImageVAE(GenerativeModule):
    """Convolutional conditional VAE over 8-bit images; ``log_prob`` is the IWAE bound on log P(pixels).

    Arguments:
        spec: the codec's description of the images: event_shape (C, H, W), extra["n_classes"] = K.
        latent_dim: width of the latent z.
        channels: feature maps of the encoder per stride-2 level (the decoder mirrors them).
        embed_dim: width of the class embedding (unused when K = 0).
        decoder: "logistic" (discretized logistic per pixel) or "bernoulli" (binary images only).
        iw_samples: importance samples of ``log_prob`` (1 gives the ELBO).
    """

    likelihood: ClassVar[Likelihood] = "bound"
    closed_form: ClassVar[bool] = False
    conditional: ClassVar[bool] = True
    modalities: ClassVar[tuple[str, ...]] = ("image",)
    train_defaults: ClassVar[dict[str, Any]] = {"batch_size": 64}   # steps matter more than batch size on a CPU

    def __init__(self, spec: Spec, latent_dim: int = 32, channels: Sequence[int] = (32, 64), embed_dim: int = 16,
                 decoder: str = "logistic", iw_samples: int = 64):
        shape, K = image_shape(spec, "image vae"), n_classes(spec)
        if decoder not in DECODERS:
            raise ConfigError(f"decoder must be one of {DECODERS}, got {decoder!r}")
        cfg = {"latent_dim": check_int("latent_dim", latent_dim, 1), "channels": check_widths("channels", channels),
               "embed_dim": check_int("embed_dim", embed_dim, 1), "decoder": decoder,
               "iw_samples": check_int("iw_samples", iw_samples, 1)}
        super().__init__(spec, **cfg)
        C, H, W = shape
        self.shape, self.K, self.latent_dim, self.D = shape, K, cfg["latent_dim"], C * H * W
        e = cfg["embed_dim"] if K > 0 else 0
        self.embed = LabelEmbedding(K, e) if K > 0 else None
        self.encoder = ConvEncoder(C, (H, W), cfg["channels"], norm=True, slope=0.0)
        self.to_latent = nn.Linear(math.prod(self.encoder.out_shape) + e, 2 * self.latent_dim)
        out_channels = 2 * C if decoder == "logistic" else C
        self.decoder = ConvDecoder(self.latent_dim, out_channels, (H, W), cfg["channels"], cond_dim=e)
        # p(z | y): first and second moments per class (row K: no label), set by the M-step in elbo()
        self.register_buffer("prior_mean", torch.zeros(K + 1, self.latent_dim))
        self.register_buffer("prior_sq", torch.ones(K + 1, self.latent_dim))
        counts = torch.ones(K + 1)
        counts[K] = 0.0 if K > 0 else 1.0
        self.register_buffer("class_counts", counts)

    # -- set-up ----------------------------------------------------------------------------------

    def prepare(self, train: Batch) -> None:
        """Keep the training class frequencies; a Bernoulli decoder checks that the images are binary."""
        binary = self.config["decoder"] == "bernoulli"
        _, pixels, label = image_batch(train, self.shape, self.K, torch.device("cpu"), need_pixels=binary)
        if binary and bool(((pixels != 0) & (pixels != 255)).any()):
            raise DataError('decoder="bernoulli" needs binary images (every pixel 0 or 255); these have other '
                            'values: use decoder="logistic", or threshold the images first')
        self.class_counts.copy_((class_counts(label, self.K) if self.K else torch.ones(1)).to(self.class_counts))

    # -- the two networks -------------------------------------------------------------------------

    def _y(self, label: Tensor) -> Tensor | None:
        return self.embed(label) if self.embed is not None else None

    def prior_params(self, label: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-std of p(z | y), each (B, L); N(0, I) without classes."""
        idx = torch.where(label < 0, torch.full_like(label, self.K), label)
        mean, sq = self.prior_mean[idx], self.prior_sq[idx]                      # (B, L)
        return mean, 0.5 * (sq - mean ** 2).clamp(min=MIN_PRIOR_VAR).log()

    @torch.no_grad()
    def _update_prior(self, label: Tensor, mu: Tensor, log_std: Tensor) -> None:
        """The M-step: move each present class's prior moments towards the batch's posterior moments."""
        if self.K == 0:
            return
        idx = torch.where(label < 0, torch.full_like(label, self.K), label)
        onehot = F.one_hot(idx, self.K + 1).to(mu.dtype)                        # (B, K + 1)
        count = onehot.sum(0)                                                    # (K + 1,)
        seen = count > 0
        first = (onehot.T @ mu)[seen] / count[seen, None]                        # (k, L)
        second = (onehot.T @ (mu ** 2 + torch.exp(2 * log_std)))[seen] / count[seen, None]
        self.prior_mean[seen] = torch.lerp(self.prior_mean[seen], first, PRIOR_RATE)
        self.prior_sq[seen] = torch.lerp(self.prior_sq[seen], second, PRIOR_RATE)

    def encode(self, x: Tensor, label: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-std of q(z | x, y), each (B, L); x (B, C, H, W) in [0, 1]."""
        h = self.encoder(2 * x - 1).flatten(1)                                    # (B, F)
        y = self._y(label)
        if y is not None:
            h = torch.cat([h, y], dim=1)
        mu, log_std = self.to_latent(h).chunk(2, dim=-1)
        return mu, log_std.clamp(-10, 5)

    def decode(self, z: Tensor, label: Tensor) -> Tensor:
        """Decoder maps (N, out, H, W) for z (N, L): [location | log-scale] (logistic) or logits (bernoulli)."""
        return self.decoder(z, self._y(label))

    def pixel_log_prob(self, out: Tensor, pixels: Tensor) -> Tensor:
        """log P(k | z) of every pixel and channel, (N, C, H, W), from decoder maps ``out`` (N, ·, H, W)."""
        C = self.shape[0]
        if self.config["decoder"] == "logistic":
            return discretized_logistic_log_prob(pixels, out[:, :C], out[:, C:])
        on = pixels == 255
        lp = -F.binary_cross_entropy_with_logits(out, on.to(out.dtype), reduction="none")
        return lp.masked_fill((pixels != 0) & ~on, -math.inf)                    # mass 0 off {0, 255}

    def log_likelihood(self, z: Tensor, pixels: Tensor, label: Tensor) -> Tensor:
        """log P(pixels | z, y) for z (S, B, L), pixels (B, C, H, W), label (B,): (S, B)."""
        S, B = z.shape[:2]
        out = self.decode(z.reshape(S * B, -1), label.repeat(S))                 # (S B, ·, H, W)
        lp = self.pixel_log_prob(out, pixels.repeat(S, 1, 1, 1))                 # (S B, C, H, W)
        return lp.flatten(1).sum(1).view(S, B)

    # -- bounds on log P(pixels) -----------------------------------------------------------------

    def _unpack(self, batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
        x, pixels, label = image_batch(batch, self.shape, self.K, self.device, need_pixels=True)
        return x, pixels, label

    def elbo(self, batch: Batch, n_samples: int = 1) -> Tensor:
        """ELBO per image (B,) in nats of log P(pixels): Monte Carlo reconstruction minus analytic KL."""
        x, pixels, label = self._unpack(batch)
        mu, log_std = self.encode(x, label)                                      # (B, L)
        z = mu + log_std.exp() * torch.randn((n_samples, *mu.shape), device=mu.device)   # (S, B, L)
        rec = self.log_likelihood(z, pixels, label).mean(0)                      # (B,)
        m, log_t = self.prior_params(label)                                      # p(z | y)
        kl = (log_t - log_std + 0.5 * (torch.exp(2 * log_std) + (mu - m) ** 2) * torch.exp(-2 * log_t) - 0.5).sum(-1)
        if self.training and torch.is_grad_enabled():                            # a training step
            self._update_prior(label, mu.detach(), log_std.detach())
        return rec - kl

    def iwae(self, batch: Batch, n_samples: int | None = None) -> Tensor:
        """log (1/S) sum_s P(pixels, z_s | y) / q(z_s | x, y) per image (B,), z_s ~ q (global RNG).

        A lower bound on log P(pixels | y) in expectation. The S * B (draw, image) pairs are decoded
        in passes of about ``ROWS_PER_PASS`` pixels, so memory stays bounded for any S and B."""
        S = self.config["iw_samples"] if n_samples is None else check_int("n_samples", n_samples, 1)
        x, pixels, label = self._unpack(batch)
        B = x.shape[0]
        mu, log_std = self.encode(x, label)                                      # (B, L)
        m, log_t = self.prior_params(label)
        eps = torch.randn((S, *mu.shape), device=mu.device)
        z = mu + log_std.exp() * eps                                             # (S, B, L)
        log_pz = (-0.5 * ((z - m) * torch.exp(-log_t)) ** 2 - log_t - 0.5 * _LOG_2PI).sum(-1)   # (S, B)
        log_qz = (-0.5 * eps ** 2 - log_std - 0.5 * _LOG_2PI).sum(-1)
        flat, image = z.reshape(S * B, -1), torch.arange(S * B, device=z.device) % B
        ll, rows = torch.empty(S * B, device=z.device), max(1, ROWS_PER_PASS // self.D)
        for a in range(0, S * B, rows):
            i = image[a:a + rows]
            out = self.decode(flat[a:a + rows], label[i])
            ll[a:a + rows] = self.pixel_log_prob(out, pixels[i]).flatten(1).sum(1)
        log_w = ll.view(S, B) + log_pz - log_qz
        return torch.logsumexp(log_w, dim=0) - math.log(S)

    # -- the GenerativeModule interface -----------------------------------------------------------

    def loss(self, batch: Batch) -> Tensor:
        """Negative ELBO per image, averaged over the batch (nats)."""
        return -self.elbo(batch).mean()

    def log_prob(self, batch: Batch) -> Tensor:
        """IWAE bound on log P(pixels) plus D log 256 (the image contract), (B,) nats."""
        return self.iwae(batch) + log_mass_offset(self.D)

    @torch.no_grad()
    def sample(self, n: int, *, condition: Batch | None = None, generator: torch.Generator | None = None,
               mean: bool = False) -> Batch:
        """n images {"x": (n, C, H, W)}, x = (pixels + 0.5) / 256.

        mean: False (default) draws every pixel from the decoder; True takes each pixel's expected
        value, rounded (not a sample of the model, but smoother)."""
        n = check_int("n", n, 1)
        if not isinstance(mean, bool):
            raise ConfigError(f"mean must be True or False, got {mean!r}")
        if condition is not None:
            label = check_label_condition(condition, n, self.K, "vae", self.device)
        else:
            label = draw_labels(self.class_counts, n, generator, self.device)
        m, log_t = self.prior_params(label)
        z = m + log_t.exp() * torch.randn(n, self.latent_dim, generator=generator, device=self.device)
        out = self.decode(z, label)
        C = self.shape[0]
        if self.config["decoder"] == "logistic":
            loc, log_scale = out[:, :C], out[:, C:]
            pixels = (torch.round((loc + 1) * 127.5).clamp(0, 255) if mean
                      else discretized_logistic_sample(loc, log_scale, generator).to(loc.dtype))
        else:
            p = torch.sigmoid(out)
            pixels = (torch.round(p * 255) if mean
                      else 255 * (torch.rand(p.shape, generator=generator, device=p.device) < p).to(p.dtype))
        return {"x": (pixels + 0.5) / 256}
