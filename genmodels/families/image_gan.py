"""ImageGAN: a class-conditional DCGAN with a spectrally normalised projection discriminator.

Generator G(z, y): noise z ~ N(0, I) (``latent_dim``) and, for data with K > 0 classes, a learned
embedding of the class y (``nets.conv.LabelEmbedding``; one extra row for "no label") go through a
linear layer to a small grid of ``channels[-1]`` maps, then nearest upsampling and 3x3 convolutions
double the grid down to the image size (``nets.conv.ConvDecoder``; odd sizes are cropped; DCGAN's
transposed convolutions drew a checkerboard that the discriminator seized on, and collapsed). Every normalisation
is a *conditional* GroupNorm whose gain and bias depend on the class embedding (conditional
normalisation, as in the projection-discriminator paper and BigGAN), and the embedding is also
concatenated to the noise. A tanh maps the output to [-1, 1]; images are x = (tanh + 1) / 2 in [0, 1].

Discriminator D(x, y): stride-2 3x3 convolutions with LeakyReLU(0.2) and one extra 3x3 convolution,
every weight spectrally normalised (Miyato et al., 2018); the feature map is summed over space to
phi(x) and scored with the **projection** of Miyato & Koyama (2018):

    D(x, y) = w . phi(x) + embed(y) . phi(x)

Real images are the dequantized x (the 1/256 noise is far below what D resolves); both real and fake
are shown to D as 2x - 1. Losses: **hinge** (default)

    L_D = E[relu(1 - D(x, y))] + E[relu(1 + D(G(z, y), y))],      L_G = -E[D(G(z, y), y)],

``loss="ns"``, the non-saturating loss of Goodfellow et al. (L_D = E[softplus(-D(real))] +
E[softplus(D(fake))], L_G = E[softplus(-D(fake))]), or ``loss="wgan-gp"``: L_D = E[D(fake)] - E[D(real)]
+ gp_weight * E[(||grad D(x_mix)|| - 1)^2] (Gulrajani et al., 2017), L_G = -E[D(fake)]. Fakes are drawn
with the labels of the real batch, so the class frequencies of the data are learned. ``n_critic`` D
steps per G step; Adam with betas (``beta1``, ``beta2``; default (0.5, 0.999), DCGAN's) and two
learning rates (TTUR, Heusel et al.). The defaults give the *generator* the faster rate (g_lr 4e-4,
d_lr 1e-4): on MNIST (28x28, batch 64, one CPU thread) equal rates of 2e-4 let the discriminator
satisfy every hinge margin within 50 steps (L_D = 0) and the generator collapsed to one checkered or
black image, while 4e-4 / 1e-4 kept L_D near 1.5 and drew varied stroke-like digits by step 250.

An **exponential moving average** of the generator's weights (``ema_decay``; warm-started as in
TensorFlow's ExponentialMovingAverage: decay min(ema_decay, (1 + n) / (10 + n)) after n updates) is
kept in ``generator_ema`` and is what ``sample`` uses by default (``sample(..., ema=False)`` uses the
raw weights). Averaging the iterates of a GAN damps its oscillation (Yazıcı et al., 2019).

No likelihood: ``log_prob`` raises ``NoLikelihoodError``. As for the tabular gan, ``loss(batch)`` is
the **validation metric** that the training loop uses for early stopping and for keeping the best
weights: the energy distance between the batch's images and as many EMA-generator images drawn with
the batch's labels and a fixed internal seed, both average-pooled to at most 14x14 pixels. Lower is
better; 0 for identical samples. Keep ``validation > 0`` for this family.

Sampling: ``sample(n)`` without a condition draws labels from the training class frequencies (kept
by ``prepare``; uniform before it); ``condition={"label": LongTensor (n,)}`` samples given a class.

References:
    | Unsupervised Representation Learning with Deep Convolutional GANs (Radford et al., 2016)
    | https://arxiv.org/abs/1511.06434
    | Spectral Normalization for Generative Adversarial Networks (Miyato et al., 2018)
    | https://arxiv.org/abs/1802.05957
    | cGANs with Projection Discriminator (Miyato & Koyama, 2018) https://arxiv.org/abs/1802.05637
    | Geometric GAN (Lim & Ye, 2017), the hinge loss, https://arxiv.org/abs/1705.02894
    | Improved Training of Wasserstein GANs (Gulrajani et al., 2017) https://arxiv.org/abs/1704.00028
    | GANs Trained by a Two Time-Scale Update Rule (Heusel et al., 2017) https://arxiv.org/abs/1706.08500
    | The Unusual Effectiveness of Averaging in GAN Training (Yazıcı et al., 2019)
    | https://arxiv.org/abs/1806.04498

Example:
    >>> spec = Spec(event_shape=(1, 8, 8), extra={"n_classes": 10})
    >>> gan = ImageGAN(spec, latent_dim=16, g_channels=(16, 32), d_channels=(16, 32))
    >>> gan.sample(4, condition={"label": torch.tensor([3, 3, 7, 7])},
    ...            generator=torch.Generator().manual_seed(0))["x"].shape
    torch.Size([4, 1, 8, 8])
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core import (
    Batch,
    GenerativeModule,
    Likelihood,
    Spec,
    check_float,
    check_int,
    check_widths,
)
from ..errors import ConfigError, NoLikelihoodError
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
from .gan import energy_distance

LOSSES = ("hinge", "ns", "wgan-gp")
VAL_SEED = 12345          # fixed noise for the validation metric
VAL_POOL = 14             # the validation metric compares images average-pooled to at most this size


class _Generator(nn.Module):
    """(z, label) -> image in [0, 1]: label embedding + conditional ConvDecoder + tanh."""

    def __init__(self, shape: tuple[int, int, int], K: int, latent_dim: int, channels: Sequence[int],
                 embed_dim: int):
        super().__init__()
        self.embed = LabelEmbedding(K, embed_dim) if K > 0 else None
        self.net = ConvDecoder(latent_dim, shape[0], shape[1:], channels, cond_dim=embed_dim if K > 0 else 0)

    def forward(self, z: Tensor, label: Tensor) -> Tensor:
        y = self.embed(label) if self.embed is not None else None
        return (torch.tanh(self.net(z, y)) + 1) / 2                            # (B, C, H, W) in [0, 1]


class _Discriminator(nn.Module):
    """(image in [0, 1], label) -> score (B,): spectrally normalised conv trunk, sum pooling, projection."""

    def __init__(self, shape: tuple[int, int, int], K: int, channels: Sequence[int], spectral: bool):
        super().__init__()
        self.trunk = ConvEncoder(shape[0], shape[1:], channels, norm=False, spectral=spectral, extra=1)
        width = channels[-1]
        sn = nn.utils.parametrizations.spectral_norm if spectral else (lambda m: m)
        self.head = sn(nn.Linear(width, 1))
        self.embed = sn(nn.Embedding(K + 1, width)) if K > 0 else None
        self.K = K

    def forward(self, x: Tensor, label: Tensor) -> Tensor:
        phi = self.trunk(2 * x - 1).sum(dim=(2, 3))                           # (B, F)
        out = self.head(phi).squeeze(1)                                        # (B,)
        if self.embed is not None:
            idx = torch.where(label < 0, torch.full_like(label, self.K), label)
            out = out + (self.embed(idx) * phi).sum(dim=1)                     # projection
        return out


class ImageGAN(GenerativeModule):
    """Class-conditional DCGAN: spectral-norm projection discriminator, hinge loss, EMA generator.

    Arguments:
        spec: the codec's description of the images: event_shape (C, H, W), extra["n_classes"] = K.
        latent_dim: width of the noise z.
        g_channels: generator feature maps per level, shallow to deep (the generator starts from
            ``g_channels[-1]`` maps on a grid 2^len smaller than the image and ends with ``g_channels[0]``).
        d_channels: discriminator feature maps per stride-2 level.
        embed_dim: width of the generator's class embedding (unused when K = 0).
        loss: "hinge" (with spectral norm, the SNGAN recipe), "ns" (non-saturating) or "wgan-gp".
        gp_weight: gradient-penalty weight (``loss="wgan-gp"`` only).
        n_critic: discriminator steps per generator step.
        g_lr, d_lr: Adam learning rates of generator and discriminator; the loop's ``lr`` and
            ``weight_decay`` are not used, its warm-up and decay factors are.
        beta1, beta2: Adam betas.
        ema_decay: decay of the generator's weight average used for sampling (0 disables it).
        spectral_norm: spectral normalisation of every discriminator weight.
    """

    likelihood: ClassVar[Likelihood] = "none"
    closed_form: ClassVar[bool] = False
    conditional: ClassVar[bool] = True
    modalities: ClassVar[tuple[str, ...]] = ("image",)
    # a CPU budget needs steps: the loop's own batch (256 for 4,000 images) gives 4x fewer
    train_defaults: ClassVar[dict[str, Any]] = {"batch_size": 64}

    def __init__(self, spec: Spec, latent_dim: int = 64, g_channels: Sequence[int] = (32, 64),
                 d_channels: Sequence[int] = (32, 64), embed_dim: int = 32, loss: str = "hinge",
                 gp_weight: float = 10.0, n_critic: int = 1, g_lr: float = 4e-4, d_lr: float = 1e-4,
                 beta1: float = 0.5, beta2: float = 0.999, ema_decay: float = 0.999, spectral_norm: bool = True):
        shape, K = image_shape(spec, "image gan"), n_classes(spec)
        if loss not in LOSSES:
            raise ConfigError(f"loss must be one of {LOSSES}, got {loss!r}")
        if not isinstance(spectral_norm, bool):
            raise ConfigError(f"spectral_norm must be True or False, got {spectral_norm!r}")
        cfg = {"latent_dim": check_int("latent_dim", latent_dim, 1),
               "g_channels": check_widths("g_channels", g_channels),
               "d_channels": check_widths("d_channels", d_channels),
               "embed_dim": check_int("embed_dim", embed_dim, 1),
               "loss": loss, "gp_weight": check_float("gp_weight", gp_weight, 0.0),
               "n_critic": check_int("n_critic", n_critic, 1),
               "g_lr": check_float("g_lr", g_lr, 0.0, open_low=True),
               "d_lr": check_float("d_lr", d_lr, 0.0, open_low=True),
               "beta1": check_float("beta1", beta1, 0.0, 0.999), "beta2": check_float("beta2", beta2, 0.0, 0.9999),
               "ema_decay": check_float("ema_decay", ema_decay, 0.0, 0.99999), "spectral_norm": spectral_norm}
        super().__init__(spec, **cfg)
        self.shape, self.K = shape, K
        self.generator = _Generator(shape, K, cfg["latent_dim"], cfg["g_channels"], cfg["embed_dim"])
        self.discriminator = _Discriminator(shape, K, cfg["d_channels"], spectral_norm)
        self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False)
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))
        counts = torch.ones(K + 1)
        counts[K] = 0.0 if K > 0 else 1.0                 # no classes: every draw is "no label"
        self.register_buffer("class_counts", counts)

    # -- set-up ----------------------------------------------------------------------------------

    def prepare(self, train: Batch) -> None:
        """Keep the training class frequencies (unconditional sampling draws labels from them)."""
        _, _, label = image_batch(train, self.shape, self.K, torch.device("cpu"))
        counts = class_counts(label, self.K)
        if self.K == 0:
            counts = torch.ones(1)
        self.class_counts.copy_(counts.to(self.class_counts))

    def configure_optimizers(self, lr: float, weight_decay: float) -> list[torch.optim.Optimizer]:
        """Adam for generator and discriminator with this family's rates and betas (the loop's lr unused)."""
        c, betas = self.config, (self.config["beta1"], self.config["beta2"])
        return [torch.optim.Adam(self.generator.parameters(), lr=c["g_lr"], betas=betas),
                torch.optim.Adam(self.discriminator.parameters(), lr=c["d_lr"], betas=betas)]

    # -- training: the per-step hook of the one loop (train.py) ----------------------------------

    def _noise(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return torch.randn(n, self.config["latent_dim"], generator=generator, device=self.device)

    def _gradient_penalty(self, real: Tensor, fake: Tensor, label: Tensor) -> Tensor:
        eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
        mixed = (eps * real + (1 - eps) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(self.discriminator(mixed, label).sum(), mixed, create_graph=True)
        return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()

    def training_step(self, batch: Batch, step: int, optimizers: list[torch.optim.Optimizer]) -> dict[str, float]:
        """``n_critic`` discriminator steps, one generator step, one EMA update."""
        opt_g, opt_d = optimizers
        real, _, label = image_batch(batch, self.shape, self.K, self.device)
        n, kind = real.shape[0], self.config["loss"]
        for _ in range(self.config["n_critic"]):
            with torch.no_grad():
                fake = self.generator(self._noise(n), label)
            d_real, d_fake = self.discriminator(real, label), self.discriminator(fake, label)
            if kind == "hinge":
                d_loss = F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
            elif kind == "ns":
                d_loss = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
            else:
                gp = self._gradient_penalty(real, fake, label)
                d_loss = d_fake.mean() - d_real.mean() + self.config["gp_weight"] * gp
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
        d_gen = self.discriminator(self.generator(self._noise(n), label), label)
        g_loss = F.softplus(-d_gen).mean() if kind == "ns" else -d_gen.mean()
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        self.update_ema()
        if not (torch.isfinite(g_loss) and torch.isfinite(d_loss)):
            raise FloatingPointError(f"the GAN losses became {float(g_loss)} / {float(d_loss)} at step {step}; "
                                     "lower g_lr/d_lr")
        return {"loss": g_loss.item(), "d_loss": d_loss.item()}

    @torch.no_grad()
    def update_ema(self) -> None:
        """generator_ema <- d * generator_ema + (1 - d) * generator, d = min(ema_decay, (1 + n) / (10 + n))."""
        n = int(self.ema_updates)
        d = min(self.config["ema_decay"], (1 + n) / (10 + n))
        for p_ema, p in zip(self.generator_ema.parameters(), self.generator.parameters()):
            p_ema.lerp_(p.detach(), 1 - d)
        for b_ema, b in zip(self.generator_ema.buffers(), self.generator.buffers()):
            b_ema.copy_(b)
        self.ema_updates += 1

    @torch.no_grad()
    def loss(self, batch: Batch) -> Tensor:
        """Validation metric: energy distance between the batch's images and as many EMA-generator images
        (the batch's labels, fixed seed), both average-pooled to at most 14x14; lower is better."""
        x, _, label = image_batch(batch, self.shape, self.K, self.device)
        g = torch.Generator(self.device).manual_seed(VAL_SEED)
        fake = self.generator_ema(self._noise(x.shape[0], g), label)
        size = (min(VAL_POOL, self.shape[1]), min(VAL_POOL, self.shape[2]))
        pool = lambda t: F.adaptive_avg_pool2d(t, size).flatten(1)
        return energy_distance(pool(x), pool(fake))

    # -- the GenerativeModule interface ----------------------------------------------------------

    def log_prob(self, batch: Batch) -> Tensor:
        raise NoLikelihoodError("the gan family has no likelihood; score images with vae, flow, pixelcnn "
                                "or diffusion")

    @torch.no_grad()
    def sample(self, n: int, *, condition: Batch | None = None, generator: torch.Generator | None = None,
               ema: bool = True) -> Batch:
        """n images {"x": (n, C, H, W) in [0, 1]}; labels from ``condition`` or the training frequencies.

        ema: use the averaged generator (default) or the raw one."""
        n = check_int("n", n, 1)
        if not isinstance(ema, bool):
            raise ConfigError(f"ema must be True or False, got {ema!r}")
        if condition is not None:
            label = check_label_condition(condition, n, self.K, "gan", self.device)
        else:
            label = draw_labels(self.class_counts, n, generator, self.device)
        z = self._noise(n, generator)
        net = self.generator_ema if ema else self.generator
        return {"x": net(z, label)}
