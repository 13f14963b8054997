"""Image diffusion: DDPM with a small U-Net, a cosine schedule, DDIM sampling and classifier-free guidance.

Pixels k in {0..255} are scaled to x_0 = 2 k / 255 - 1 in [-1, 1] (Ho et al.). The forward process is
the tabular family's (``families.diffusion.NoiseSchedule``, cosine by default, T = 1000 steps):

    q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I),     t = 1..T

A U-Net (``nets.unet.UNet``) reads (x_t, t, label) and predicts the velocity
v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0 (Salimans & Ho, 2022), so
x0_hat = sqrt(abar_t) x_t - sqrt(1 - abar_t) v_hat and eps_hat = sqrt(1 - abar_t) x_t + sqrt(abar_t) v_hat.
Training minimises the plain v MSE, mean over pixels, at t uniform on 1..T: |v - v_hat|^2 =
|eps - eps_hat|^2 + |x_0 - x0_hat|^2, Salimans & Ho's "SNR + 1" weighting, which keeps weight on the
noisiest steps (where eps-MSE gives none to x_0) that set the samples' global shape.

Labels (K = ``spec.extra["n_classes"]`` > 0): the label embedding has K + 1 entries, the last a null
class. Training replaces the label by the null class with probability ``p_uncond`` (and always for
unlabelled images), so one network is both p(x | y) and p(x) (classifier-free guidance, Ho & Salimans
2022). Sampling with guidance w >= 0 uses

    v_guided = (1 + w) v_hat(x_t, y) - w v_hat(x_t, null)

(the same combination of eps, as eps_hat is affine in v_hat); w = 0 is the plain conditional model.
``sample(n)`` without a condition draws each label from the training class frequencies (the share of
unlabelled training images gets the null class), then samples conditionally, with the same guidance.

Samplers (how it is sampled, apart from what is learned; ``NoiseSchedule.step``): "ddim" (eta = 0,
deterministic given x_T; default, 50 steps) and "ddpm" (ancestral, the reverse process of the bound;
all T steps by default, fewer respace it). x0_hat is clipped to [-1, 1] at every step (``clip``, as Ho
et al.'s code and diffusers do); the last step returns x0_hat, mapped to x = (127.5 (x_0 + 1) + 0.5) / 256
in [0.5 / 256, 255.5 / 256], so that the codec's floor(256 x) is the pixel nearest to x0_hat.

``log_prob`` is the variational bound (Ho et al., eq. 5) on the 8-bit mass P(pixels | label), nats:

    log P(k) >= -KL(q(x_T | x_0) || N(0, I)) - sum_{t=2..T} KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t))
                + log p(k | x_1)

with the reverse variance beta_t (the schedule's table; exact for N(0, I) data) and Ho et al.'s
discretized Gaussian decoder p(k | x_1) = prod_i int_{bin(k_i)} N(u; x0_hat_i(x_1, 1), beta_1) du over
the bins [x_0 - 1/255, x_0 + 1/255] (the edge bins reaching to -inf / +inf). Following the image
contract, it returns that bound + D log 256 (D = C H W), so that the codec's -D log 256 leaves the bound on
log P(pixels) itself. The sum over t = 2..T costs one network pass per timestep per image; with
``bound_timesteps = k`` it is replaced by a stratified Monte-Carlo estimate: {2..T} is cut into k
contiguous strata of sizes n_j growing linearly with j (1 at small t, where the terms are largest and
change fastest, about 2 (T - 1) / k at large t), one t_j is drawn uniformly in each (per image), and the
sum is estimated by sum_j n_j KL_{t_j}. E[n_j KL_{t_j}] = sum over stratum j, so the estimate is unbiased for
the bound, at k + 1 passes per image (plus one draw of x_t per term, as the bound itself is an
expectation over q); per image it is noisy, averages over many images are not. ``None`` sums all T - 1
terms. Randomness from ``generator`` (or torch's global RNG). For an image with label -1 (or K = 0) it is
the bound of the unconditional (null-label) model. The fixed reverse variance beta_t alone costs
sum_t nll_const[t] = 0.43 bits/dim at T = 1000 (cosine), whatever the network.

Defaults are sized for one CPU thread: channels (16, 32, 64) (0.46 M weights, 28 -> 14 -> 7), about
50 training images/s and 150 network passes/s at 28x28. On the 4,000-image MNIST split, 6 minutes on a
shared 2-core machine (475 steps of batch 32, lr 2e-3) gave clean backgrounds and mostly legible
digits of the asked class; the bound on 20 test images was 2.95 bits/dim (one estimate with
bound_timesteps=100 has a per-image sd of 0.05 bits/dim, about that of the full sum's own x_t draws).

References:
    | Denoising Diffusion Probabilistic Models (Ho et al., 2020)
    | https://arxiv.org/abs/2006.11239
    | Improved Denoising Diffusion Probabilistic Models (Nichol & Dhariwal, 2021)
    | https://arxiv.org/abs/2102.09672
    | Denoising Diffusion Implicit Models (Song et al., 2021)
    | https://arxiv.org/abs/2010.02502
    | Classifier-Free Diffusion Guidance (Ho & Salimans, 2022)
    | https://arxiv.org/abs/2207.12598
    | Progressive Distillation for Fast Sampling of Diffusion Models (Salimans & Ho, 2022)
    | https://arxiv.org/abs/2202.00512

Example:
    >>> spec = Spec(event_shape=(1, 8, 8), extra={"n_classes": 10})
    >>> diff = ImageDiffusion(spec, timesteps=100, channels=(16, 32), bound_timesteps=10)
    >>> out = diff.sample(4, condition={"label": torch.tensor([0, 1, 2, 3])}, guidance=1.0, steps=10,
    ...                   generator=torch.Generator().manual_seed(0))
    >>> out["x"].shape
    torch.Size([4, 1, 8, 8])
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..core import (
    Batch,
    GenerativeModule,
    Likelihood,
    Spec,
    check_float,
    check_int,
    check_widths,
)
from ..errors import ConfigError, DataError
from ..nets.unet import UNet
from .diffusion import SAMPLERS, SCHEDULES, NoiseSchedule, normal_kl

DDIM_STEPS = 50          # the "ddim" sampler's default number of steps
MAX_BATCH = 256          # images per network pass in log_prob and sample
_LOG_256 = math.log(256.0)


def discretized_gaussian_log_prob(pixels: Tensor, mean: Tensor, scale: Tensor | float) -> Tensor:
    """log of the mass N(mean, scale^2) puts on each pixel's bin, element-wise, float64 (Ho et al., eq. 13).

    pixels: integer values 0..255; mean in the [-1, 1] scaling (pixel k at 2 k / 255 - 1, bins 2 / 255 wide,
    the first and last reaching to -inf and +inf). Computed from log-CDFs, stable far in the tails.
    """
    x = pixels.double() * (2.0 / 255.0) - 1.0
    s = torch.as_tensor(scale, dtype=torch.float64, device=x.device)
    hi = (x - mean.double() + 1.0 / 255.0) / s                          # standardised upper edge
    lo = (x - mean.double() - 1.0 / 255.0) / s                          # standardised lower edge
    hi = torch.where(pixels >= 255, torch.full_like(hi, math.inf), hi)
    lo = torch.where(pixels <= 0, torch.full_like(lo, -math.inf), lo)
    # log(Phi(hi) - Phi(lo)); in the upper tail, as log(Phi(-lo) - Phi(-hi)), so no 1 - 1 cancels
    upper = lo > 0
    a = torch.where(upper, -lo, hi)
    b = torch.where(upper, -hi, lo)                                     # a > b
    la, lb = torch.special.log_ndtr(a), torch.special.log_ndtr(b)
    return la + torch.log(-torch.expm1(lb - la))


class ImageDiffusion(GenerativeModule):
    """DDPM over images with a U-Net, v-prediction, classifier-free guidance; log_prob is the variational bound.

    Arguments:
        spec: the codec's description: ``event_shape = (C, H, W)``, ``extra["n_classes"] = K``.
        timesteps: diffusion steps T (>= 2).
        schedule: "cosine" (Nichol & Dhariwal) or "linear" (Ho et al.) noise schedule.
        channels: U-Net width at each resolution (len(channels) - 1 halvings: 28 -> 14 -> 7 by default).
        res_blocks: residual blocks per resolution on each side of the U.
        attention: self-attention at the lowest resolution.
        dropout: dropout inside the residual blocks.
        p_uncond: probability of training on the null label instead of the image's (K > 0), in [0, 1).
        guidance: default guidance weight w >= 0 of ``sample`` (0: plain conditional sampling).
        sampler: default sampler, "ddim" or "ddpm".
        sampling_steps: default number of sampler steps (None: 50 for "ddim", T for "ddpm").
        bound_timesteps: timesteps of ``log_prob``'s stratified estimate of the sum over t = 2..T
            (None: all T - 1, exact sum; cost is bound_timesteps + 1 network passes per image).
    """

    likelihood: ClassVar[Likelihood] = "bound"
    closed_form: ClassVar[bool] = False
    conditional: ClassVar[bool] = True
    modalities: ClassVar[tuple[str, ...]] = ("image",)
    # measured on MNIST-5k, 6 min on one thread: batch 32 / lr 2e-3 gave validation loss 0.143 and
    # digit-shaped samples where batch 64 / lr 1e-3 gave 0.242 and speckle
    train_defaults: ClassVar[dict[str, Any]] = {"batch_size": 32, "lr": 2e-3, "warmup_steps": 50}

    def __init__(self, spec: Spec, timesteps: int = 1000, schedule: str = "cosine",
                 channels: Sequence[int] = (16, 32, 64), res_blocks: int = 1, attention: bool = True,
                 dropout: float = 0.0, p_uncond: float = 0.1, guidance: float = 0.0, sampler: str = "ddim",
                 sampling_steps: int | None = None, bound_timesteps: int | None = 100):
        shape = tuple(spec.event_shape)
        if len(shape) != 3 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
            raise ConfigError(f"image diffusion needs spec.event_shape = (C, H, W) of positive integers, got {shape}")
        K = spec.extra.get("n_classes", 0)
        K = check_int('spec.extra["n_classes"]', K, 0)
        timesteps = check_int("timesteps", timesteps, 2)
        if schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        channels = check_widths("channels", channels)
        res_blocks = check_int("res_blocks", res_blocks, 1)
        if not isinstance(attention, bool):
            raise ConfigError(f"attention must be True or False, got {attention!r}")
        dropout = check_float("dropout", dropout, 0.0, 1.0)
        if dropout >= 1:
            raise ConfigError(f"dropout must be < 1, got {dropout}")
        p_uncond = check_float("p_uncond", p_uncond, 0.0, 1.0)
        if p_uncond >= 1:
            raise ConfigError(f"p_uncond must be < 1 (1 would never train the conditional model), got {p_uncond}")
        guidance = self._check_guidance(guidance, K)
        self._check_sampler(sampler, sampling_steps, timesteps)
        if bound_timesteps is not None:
            bound_timesteps = check_int("bound_timesteps", bound_timesteps, 1)
        super().__init__(spec, timesteps=timesteps, schedule=schedule, channels=channels, res_blocks=res_blocks,
                         attention=attention, dropout=dropout, p_uncond=p_uncond, guidance=guidance,
                         sampler=sampler, sampling_steps=sampling_steps, bound_timesteps=bound_timesteps)
        self.shape, self.n_classes = shape, K
        self.schedule = NoiseSchedule(schedule, timesteps)
        self.net = UNet(shape[0], shape[0], channels, res_blocks, attention, n_classes=K, dropout=dropout)
        # training class frequencies, the last entry the unlabelled share (set by prepare; uniform before)
        counts = torch.ones(K + 1, dtype=torch.float64)
        counts[K] = 0.0 if K else 1.0
        self.register_buffer("class_counts", counts)

    # -- checks ---------------------------------------------------------------------------------------

    @staticmethod
    def _check_guidance(w: Any, K: int) -> float:
        w = check_float("guidance", w, 0.0)
        if w > 0 and K == 0:
            raise ConfigError("guidance needs class labels, and this model was trained without labels; use guidance=0")
        return w

    @staticmethod
    def _check_sampler(sampler: Any, steps: Any, timesteps: int) -> tuple[str, int]:
        if sampler not in SAMPLERS:
            raise ConfigError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        if steps is None:
            return sampler, min(DDIM_STEPS, timesteps) if sampler == "ddim" else timesteps
        steps = check_int("steps", steps, 1)
        if steps > timesteps:
            raise ConfigError(f"steps must be <= timesteps ({timesteps}), got {steps}")
        return sampler, steps

    def _inputs(self, batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
        """pixels (B, C, H, W) long, x_0 = 2 pixels / 255 - 1 (B, C, H, W) float32, labels (B,) in [0, K]
        (K: null), all on the module's device, checked against the spec."""
        if not isinstance(batch, dict) or ("pixels" not in batch and "x" not in batch):
            raise DataError('an image batch is a dict with "pixels" (uint8 (B, C, H, W)) or "x" (float in [0, 1))')
        if "pixels" in batch:
            pixels = batch["pixels"]
            if pixels.is_floating_point():
                raise DataError(f'batch["pixels"] must hold integer pixel values, got dtype {pixels.dtype}')
        else:                                    # the dequantized x = (pixels + u) / 256 alone
            pixels = torch.floor(batch["x"].detach() * 256.0).clamp(0, 255)
        if pixels.ndim != 4 or tuple(pixels.shape[1:]) != self.shape:
            raise DataError(f"the model expects images of shape (B, {', '.join(map(str, self.shape))}), "
                            f"got {tuple(pixels.shape)}")
        pixels = pixels.to(self.device).long()
        if (pixels < 0).any() or (pixels > 255).any():
            raise DataError("pixel values must lie in 0..255")
        B, K = pixels.shape[0], self.n_classes
        label = batch.get("label")
        if label is None or K == 0:
            label = torch.full((B,), K, dtype=torch.long, device=self.device)
        else:
            label = torch.as_tensor(label).to(self.device).long().reshape(-1)
            if label.shape[0] != B:
                raise DataError(f"{B} images but {label.shape[0]} labels")
            if (label < -1).any() or (label >= K).any():
                raise DataError(f"labels must lie in [0, {K}) or be -1 (no label)")
            label = torch.where(label < 0, torch.full_like(label, K), label)
        return pixels, pixels.float() * (2.0 / 255.0) - 1.0, label

    # -- training -------------------------------------------------------------------------------------

    def prepare(self, train: Batch) -> None:
        """Record the training class frequencies (unlabelled images count for the null class)."""
        _, _, label = self._inputs(train)
        counts = torch.bincount(label, minlength=self.n_classes + 1).double()
        self.class_counts.copy_(counts.to(self.class_counts.device))

    def predict(self, x_t: Tensor, t: Tensor, label: Tensor) -> Tensor:
        """v_hat (B, C, H, W) for x_t (B, C, H, W), timesteps t (B,) and labels (B,) in [0, K]."""
        return self.net(x_t, t, label if self.n_classes else None)

    def loss(self, batch: Batch) -> Tensor:
        """v MSE (mean over pixels and images) at t uniform on 1..T; labels dropped w.p. p_uncond.

        In eval mode (validation) t, the noise and the dropped labels come from a fixed seed, so that
        validation losses of successive epochs differ by the model, not by the draws."""
        _, x0, label = self._inputs(batch)
        B, K, dev = x0.shape[0], self.n_classes, x0.device
        g = None if self.training else torch.Generator(dev).manual_seed(0)
        if K and self.config["p_uncond"] > 0:
            drop = torch.rand(B, generator=g, device=dev) < self.config["p_uncond"]
            label = torch.where(drop, torch.full_like(label, K), label)
        t = torch.randint(1, self.schedule.T + 1, (B,), generator=g, device=dev)          # (B,)
        ab = self.schedule.abar[t].float()[:, None, None, None]                             # (B, 1, 1, 1)
        eps = torch.randn(x0.shape, generator=g, device=dev)
        x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
        v = ab.sqrt() * eps - (1 - ab).sqrt() * x0
        return ((self.predict(x_t, t, label) - v) ** 2).mean()

    # -- the bound ------------------------------------------------------------------------------------

    def _bound_grid(self, B: int, k: int | None, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Timesteps (B, k) in 2..T and weights (k,) of the stratified estimate of sum_{t=2..T} (all of them,
        weight 1, when k is None or >= T - 1)."""
        T, dev = self.schedule.T, self.device
        N = T - 1
        if k is None or k >= N:
            return torch.arange(2, T + 1, device=dev).expand(B, N), torch.ones(N, dtype=torch.float64, device=dev)
        # stratum j covers edges[j] <= t - 2 < edges[j + 1]: sizes grow linearly with j (quadratic edges),
        # so the large terms at small t are summed (nearly) exactly and the flat tail is sampled sparsely
        j = torch.arange(k + 1, device=dev, dtype=torch.float64)
        edges = torch.arange(k + 1, device=dev) + torch.floor((N - k) * (j / k) ** 2).long()   # (k+1,) 0..N
        sizes = edges[1:] - edges[:-1]                                                     # (k,) >= 1
        u = torch.rand(B, k, generator=generator, dtype=torch.float64, device=dev)
        t = 2 + edges[:-1] + torch.floor(u * sizes).long().clamp(max=sizes - 1)            # (B, k)
        return t, sizes.double()

    @torch.no_grad()
    def log_prob(self, batch: Batch, generator: torch.Generator | None = None,
                 bound_timesteps: int | None | str = "config") -> Tensor:
        """The variational bound on log P(pixels | label) + D log 256, (B,) nats (see the module docstring).

        bound_timesteps: override of the configured number of sampled timesteps (None: all of them).
        Randomness (x_t draws, sampled timesteps) from ``generator`` or the global RNG. Not differentiable.
        """
        k = self.config["bound_timesteps"] if bound_timesteps == "config" else bound_timesteps
        if k is not None:
            k = check_int("bound_timesteps", k, 1)
        pixels, x0, label = self._inputs(batch)
        s, T, B, D = self.schedule, self.schedule.T, x0.shape[0], math.prod(self.shape)
        x64 = x0.double()
        # prior: -KL(q(x_T | x_0) || N(0, I)), closed form
        total = -normal_kl(s.abar[T].sqrt() * x64, 1 - s.abar[T], 0.0, 1.0).flatten(1).sum(1)    # (B,)
        # decoder: log p(pixels | x_1), discretized Gaussian around x0_hat(x_1), variance beta_1
        ones = torch.ones(B, dtype=torch.long, device=x0.device)
        x_t, _, v_hat = self._noisy_pass(x0, ones, label, generator)
        ab1 = s.abar[1]
        x0_hat = ab1.sqrt() * x_t.double() - (1 - ab1).sqrt() * v_hat.double()
        total = total + discretized_gaussian_log_prob(pixels, x0_hat, s.beta[1].sqrt()).flatten(1).sum(1)
        # sum_{t>=2} KL(q(x_{t-1} | x_t, x_0) || N(mu_theta, beta_t)) = nll_weight |v - v_hat|^2 + D nll_const
        ts, w = self._bound_grid(B, k, generator)                                     # (B, k), (k,)
        kk = ts.shape[1]
        rows = torch.arange(B, device=x0.device).repeat_interleave(kk)                    # (B k,) image index
        tf, wf = ts.reshape(-1), w.repeat(B)                                              # (B k,)
        kl = torch.zeros(B * kk, dtype=torch.float64, device=x0.device)
        for i in range(0, B * kk, MAX_BATCH):
            r, t = rows[i:i + MAX_BATCH], tf[i:i + MAX_BATCH]
            _, v, v_hat = self._noisy_pass(x0[r], t, label[r], generator)
            sq = ((v.double() - v_hat.double()) ** 2).flatten(1).sum(1)                   # (b,)
            kl[i:i + MAX_BATCH] = s.nll_weight[t] * sq + D * s.nll_const[t]
        total = total - torch.zeros(B, dtype=torch.float64, device=x0.device).index_add_(0, rows, wf * kl)
        return total + D * _LOG_256

    def _noisy_pass(self, x0: Tensor, t: Tensor, label: Tensor,
                    generator: torch.Generator | None) -> tuple[Tensor, Tensor, Tensor]:
        """A draw x_t ~ q(x_t | x_0) per image, its velocity v and the network's v_hat, in chunks."""
        ab = self.schedule.abar[t].float()[:, None, None, None]
        eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
        v = ab.sqrt() * eps - (1 - ab).sqrt() * x0
        v_hat = torch.cat([self.predict(x_t[i:i + MAX_BATCH], t[i:i + MAX_BATCH], label[i:i + MAX_BATCH])
                           for i in range(0, x0.shape[0], MAX_BATCH)])
        return x_t, v, v_hat

    # -- sampling -------------------------------------------------------------------------------------

    def _labels(self, n: int, condition: Batch | None, generator: torch.Generator | None) -> Tensor:
        """(n,) labels in [0, K]: the condition's, and where it has none (-1, or no condition) draws from
        the training class frequencies (K, the null label, for the unlabelled share)."""
        K, dev = self.n_classes, self.device
        if condition is not None:
            if K == 0:
                raise ConfigError("this model was trained without labels, so it cannot sample a given class; "
                                  "call sample(n) without condition")
            if not isinstance(condition, dict) or set(condition) != {"label"}:
                raise ConfigError(f'a condition for image diffusion is {{"label": LongTensor (n,)}}, got {condition!r}')
            given = torch.as_tensor(condition["label"], device=dev)
            if given.is_floating_point() or given.dtype == torch.bool:
                raise ConfigError(f"condition labels must be integers, got dtype {given.dtype}")
            given = given.long().reshape(-1)
            if given.numel() == 1:
                given = given.expand(n)
            if given.shape[0] != n:
                raise ConfigError(f"the condition has {given.shape[0]} labels; sample({n}, condition=...) needs {n}")
            if (given < -1).any() or (given >= K).any():
                raise ConfigError(f"condition labels must lie in [0, {K}) (or -1: drawn from the training "
                                  f"frequencies), got {given.unique().tolist()}")
        else:
            given = torch.full((n,), -1, dtype=torch.long, device=dev)
        if K == 0:
            return torch.zeros(n, dtype=torch.long, device=dev)        # the null label: the only one there is
        free = given < 0
        if free.any():
            probs = self.class_counts.to(dev, torch.float64)
            draw = torch.multinomial(probs / probs.sum(), n, replacement=True, generator=generator)
            given = torch.where(free, draw, given)
        return given

    def _guided_v(self, x: Tensor, t: int, label: Tensor, w: float) -> Tensor:
        """v_hat with classifier-free guidance (1 + w) v(x, y) - w v(x, null); rows with y = null unchanged."""
        tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        if w == 0:
            return self.predict(x, tt, label)
        null = torch.full_like(label, self.n_classes)
        v_c, v_u = self.predict(torch.cat([x, x]), torch.cat([tt, tt]), torch.cat([label, null])).chunk(2)
        return (1 + w) * v_c - w * v_u

    @torch.no_grad()
    def sample(self, n: int, *, condition: Batch | None = None, generator: torch.Generator | None = None,
               guidance: float | None = None, steps: int | None = None, sampler: str | None = None,
               clip: bool = True) -> Batch:
        """``n`` images {"x": float32 (n, C, H, W) in [0, 1]}: floor(256 x) is the pixel nearest to x0_hat.

        condition: None or {"label": LongTensor (n,) (or one label for all)} with labels in [0, K);
            -1 (and no condition) draws the label from the training class frequencies.
        guidance: classifier-free guidance weight w >= 0 (default: the configured one, 0 unless set).
        steps: sampler steps (default: ``sampling_steps``; None there: 50 for DDIM, T for DDPM).
        sampler: "ddim" (deterministic given the starting noise) or "ddpm" (ancestral).
        clip: clip x0_hat to [-1, 1] at every step.
        All randomness from ``generator``.
        """
        n = check_int("n", n, 1)
        w = self._check_guidance(self.config["guidance"] if guidance is None else guidance, self.n_classes)
        sampler = self.config["sampler"] if sampler is None else sampler
        steps = self.config["sampling_steps"] if steps is None else steps
        sampler, steps = self._check_sampler(sampler, steps, self.schedule.T)
        if not isinstance(clip, bool):
            raise ConfigError(f"clip must be True or False, got {clip!r}")
        label = self._labels(n, condition, generator)                                       # (n,)
        s, dev = self.schedule, self.device
        grid = s.grid(steps)
        out = []
        for i in range(0, n, MAX_BATCH):
            y = label[i:i + MAX_BATCH]
            x = torch.randn(len(y), *self.shape, generator=generator, device=dev)           # x_T ~ N(0, I)
            for t, t_next in itertools.pairwise(grid):
                v_hat = self._guided_v(x, t, y, w)
                ab = float(s.abar[t])
                if clip:          # x0_hat into [-1, 1], v_hat recomputed from it (x_t fixed)
                    x0_hat = (math.sqrt(ab) * x - math.sqrt(1 - ab) * v_hat).clamp(-1.0, 1.0)
                    v_hat = (math.sqrt(ab) * x - x0_hat) / math.sqrt(1 - ab)
                a, b, sigma = s.step(t, t_next, sampler)
                x = a * x + b * v_hat
                if sigma > 0:
                    x = x + sigma * torch.randn(x.shape, generator=generator, device=dev)
            out.append(x)
        x0 = torch.cat(out).clamp(-1.0, 1.0)
        return {"x": ((x0 + 1.0) * 127.5 + 0.5) / 256.0}
