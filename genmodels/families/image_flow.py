"""ImageFlow: a multi-scale RealNVP / Glow normalizing flow over images, optionally class-conditional.

The dequantized image x in [0, 1)^D (D = C H W) goes through an invertible map to latents z whose
density is a learned Gaussian, so by the change of variables

    log p(x | y) = log p(z | y) + log |det dz/dx|

exactly (``likelihood = "exact"``: an exact density of the dequantized x; in 8-bit units it is the
usual variational lower bound on log P(pixels), which the Model labels a bound). The map is

1. logit pre-processing, u = logit(a + (1 - 2a) x) with a = ``alpha``, log-det per element
   log(1 - 2a) - log p - log(1 - p), p = a + (1 - 2a) x (RealNVP, section 4.1). The default a = 1e-6
   is MAF's choice for MNIST (Papamakarios et al. 2017; RealNVP's 0.05 was for natural images): the
   dequantization bin of a saturated pixel (0 or 255, most of a digit image) then maps to a logistic
   tail towards -/+ 14 with one sharp edge, instead of a narrow band with two sharp edges that a
   smooth flow fits poorly (on 8x8 digits, 400 steps: 4.2 bits/dim with 1e-6, 5.6 with 0.05);
2. ``levels`` levels, each: squeeze (C, H, W) -> (4C, H/2, W/2); ``depth`` Glow steps of
   [ActNorm (data-dependent init), invertible 1x1 convolution (LU form), affine coupling with a small
   CNN that also sees the label, and scale sigmoid(r + 2)]; then, except at the last level, half of the channels z_l leave
   the flow with the learned split prior p(z_l | h_l, y) = N(mu(h_l) + e_l(y), sigma(h_l) e'_l(y))
   of Glow (h_l: the half that stays);
3. the top latent has a learned Gaussian p(z_L | y) with one mean and scale per element and class.

The class label y in [0, K) enters twice: a per-class vector added to the first hidden layer of
every coupling network (so the map z = f(x; y) itself is class-specific), and zero-initialised
embeddings that shift the priors' means and log-scales. Conditioning through the priors alone
learns slowly (after 150 steps on digits, samples asked for a class looked like another); through
the couplings too, 86% of samples (98% at temperature 0.7) are classified as the asked digit by a
logistic regression. With a label, ``log_prob`` is log p(x | y); an image without one (y = -1) gets
the exact mixture log sum_k pi_k p(x | k), pi the training class frequencies (Laplace-smoothed,
set in ``prepare``), at the cost of one pass of the flow per class. With K = 0 the flow is
unconditional.

Levels. A squeeze needs even H and W, and a level is added only while the squeezed size stays >= 2:
8x8 -> 4x4 -> 2x2 (2 levels), 28x28 -> 14x14 -> 7x7 (2 levels; 7 is odd, so no third), 32x32 ->
16 -> 8 -> 4 (3 levels: ``levels=None`` uses at most 3). An image that cannot be squeezed at all
(an odd side) gets one level without squeeze whose couplings use RealNVP's checkerboard masks.

Data-dependent initialisation: every ActNorm (in the flow and inside the coupling networks) is set
so that its output has zero mean and unit variance per channel on the first 512 training images
(``prepare``; or on the first batch ``loss`` sees if ``prepare`` was never called). It is
deterministic given the data and kept in the ``initialized`` buffer, so a reloaded model is not
re-initialised.

Sampling draws z from the priors with standard deviations multiplied by ``temperature`` (1 by default;
Glow's "reduced temperature" < 1 gives smoother, less diverse images), runs the inverse map, undoes
the logit and clamps into [0, 1]. Without a condition and with K > 0, labels are drawn from the
training class frequencies.

References:
    | Density estimation using Real NVP (Dinh et al., 2017) https://arxiv.org/abs/1605.08803
    | Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma & Dhariwal, 2018)
    | https://arxiv.org/abs/1807.03039

Example:
    >>> spec = Spec(event_shape=(1, 8, 8), extra={"n_classes": 10})
    >>> flow = ImageFlow(spec, depth=2, hidden=16)
    >>> out = flow.sample(4, condition={"label": torch.tensor([3, 3, 7, 7])},
    ...                   generator=torch.Generator().manual_seed(0))
    >>> flow.log_prob({"x": out["x"], "label": torch.tensor([3, 3, 7, 7])}).shape
    torch.Size([4])
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..core import Batch, GenerativeModule, Likelihood, Spec, check_float, check_int
from ..errors import ConfigError, DataError
from ..nets.glow import ActNorm, FlowStep, SplitPrior, TopPrior, gaussian_log_prob, squeeze, unsqueeze

_INIT_ROWS = 512          # images used by the data-dependent ActNorm initialisation
_AUTO_MAX_LEVELS = 3      # levels=None: as many as the image size allows, at most this many


def image_spec(spec: Spec, family: str) -> tuple[int, int, int, int]:
    """(C, H, W, K) from an image spec, with a clear error for anything else."""
    shape = tuple(spec.event_shape)
    if len(shape) != 3 or any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1 for s in shape):
        raise ConfigError(f"{family}: an image spec needs event_shape (C, H, W) of positive integers, got {shape!r}")
    k = spec.extra.get("n_classes", 0)
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 0:
        raise ConfigError(f"{family}: spec.extra['n_classes'] must be an integer >= 0, got {k!r}")
    C, H, W = (int(s) for s in shape)
    return C, H, W, int(k)


def max_levels(H: int, W: int) -> int:
    """How many times (H, W) can be squeezed: both sides even and the halves >= 2."""
    n = 0
    while H % 2 == 0 and W % 2 == 0 and H // 2 >= 2 and W // 2 >= 2:
        H, W, n = H // 2, W // 2, n + 1
    return n


class ImageFlow(GenerativeModule):
    """Multi-scale Glow (RealNVP with ActNorm, 1x1 convolutions and split priors) over images.

    Arguments:
        spec: the image codec's spec: ``event_shape=(C, H, W)``, ``extra={"n_classes": K}``.
        levels: number of multi-scale levels (squeezes); None: as many as the size allows, at most 3.
        depth: Glow steps (ActNorm, 1x1 convolution, coupling) per level (>= 1; Glow's K).
        hidden: channels of each coupling network's hidden layers (>= 1).
        alpha: the logit pre-processing's margin a in u = logit(a + (1 - 2a) x), in (0, 0.5).

    Sampling options: ``temperature`` (>= 0, default 1), the prior standard deviations' multiplier.

    References:
        | Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma & Dhariwal, 2018)
        | https://arxiv.org/abs/1807.03039
    """

    likelihood: ClassVar[Likelihood] = "exact"
    closed_form: ClassVar[bool] = False
    conditional: ClassVar[bool] = True
    modalities: ClassVar[tuple[str, ...]] = ("image",)
    # a CPU budget needs steps: the loop's own choice (256 for 4,000 images) takes 4x fewer
    train_defaults: ClassVar[dict[str, Any]] = {"batch_size": 64}

    def __init__(self, spec: Spec, levels: int | None = None, depth: int = 8, hidden: int = 48,
                 alpha: float = 1e-6):
        C, H, W, K = image_spec(spec, "image_flow")
        most = max_levels(H, W)
        if levels is None:
            n_levels = max(1, min(most, _AUTO_MAX_LEVELS))
        else:
            n_levels = check_int("levels", levels, 1)
            if n_levels > max(most, 1):
                raise ConfigError(f"levels={levels} is too many for {H}x{W} images: a squeeze needs even sides "
                                  f"that stay >= 2, so at most {max(most, 1)} level(s) fit; use levels=None")
        depth = check_int("depth", depth, 1)
        hidden = check_int("hidden", hidden, 1)
        alpha = check_float("alpha", alpha, 0.0, 0.5, open_low=True)
        if alpha >= 0.5:
            raise ConfigError(f"alpha must be in (0, 0.5), got {alpha!r}")
        super().__init__(spec, levels=levels, depth=depth, hidden=hidden, alpha=alpha)

        self.n_classes, self.alpha, self.n_levels = K, alpha, n_levels
        self.squeezes = most >= 1                  # False: one level of checkerboard couplings, no squeeze
        self.flows = nn.ModuleList()
        self.splits = nn.ModuleList()
        self.keep: list[int] = []                  # channels that stay after each level's split
        c, h, w = C, H, W
        for level in range(n_levels):
            if self.squeezes:
                c, h, w = 4 * c, h // 2, w // 2
                masks = ["channel"] * depth
            else:
                masks = [f"checkerboard{i % 2}" for i in range(depth)]
            self.flows.append(nn.ModuleList([FlowStep(c, hidden, m, K) for m in masks]))
            if level < n_levels - 1:
                self.splits.append(SplitPrior(c // 2, c - c // 2, K))
                self.keep.append(c // 2)
                c = c // 2
        self.top = TopPrior((c, h, w), K)
        self.register_buffer("class_log_prior", torch.full((max(K, 1),), -math.log(max(K, 1))))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    # ---------------------------------------------------------------- the invertible map
    def _logit(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """u = logit(a + (1 - 2a) x) and its log-det (B,)."""
        a = self.alpha
        log_p = torch.log(a + (1 - 2 * a) * x)
        log_q = torch.log(a + (1 - 2 * a) * (1 - x))        # log(1 - p), accurate for x near 1 too
        ld = (math.log(1 - 2 * a) - log_p - log_q).flatten(1).sum(1)
        u = log_p - log_q
        return u, ld

    def _unlogit(self, u: Tensor) -> Tensor:
        return (torch.sigmoid(u) - self.alpha) / (1 - 2 * self.alpha)

    def transform(self, x: Tensor, label: Tensor | None = None
                  ) -> tuple[Tensor, list[Tensor], list[Tensor], Tensor]:
        """x (B, C, H, W) -> (top latent, split latents z_l, their conditioners h_l, log|det| (B,)).

        ``label`` (B,) in [0, K) conditions the coupling networks (None: K == 0)."""
        y, log_det = self._logit(x)
        zs, hs = [], []
        for level, steps in enumerate(self.flows):
            if self.squeezes:
                y = squeeze(y)                                              # (B, 4c, h/2, w/2)
            for step in steps:
                y, ld = step(y, label)
                log_det = log_det + ld
            if level < self.n_levels - 1:
                k = self.keep[level]
                zs.append(y[:, k:])
                hs.append(y[:, :k])
                y = y[:, :k]
        return y, zs, hs, log_det

    def inverse(self, top: Tensor, label: Tensor | None, draw: Callable[[int, Tensor], Tensor]) -> Tensor:
        """The inverse map from the top latent; ``draw(level, h)`` gives that level's split latent."""
        y = top
        for level in reversed(range(self.n_levels)):
            if level < self.n_levels - 1:
                y = torch.cat([y, draw(level, y)], 1)
            for step in reversed(self.flows[level]):
                y = step.inverse(y, label)
            if self.squeezes:
                y = unsqueeze(y)
        return self._unlogit(y)

    # ---------------------------------------------------------------- densities
    def _unpack(self, batch: Batch) -> tuple[Tensor, Tensor]:
        x = batch.get("x")
        shape = tuple(self.spec.event_shape)
        if x is None or x.ndim != 4 or tuple(x.shape[1:]) != shape:
            raise DataError(f'batch["x"] must have shape (B, {", ".join(map(str, shape))}), got '
                            f"{None if x is None else tuple(x.shape)}: an image of the wrong size?")
        p = next(self.parameters())
        x = x.to(device=p.device, dtype=p.dtype)
        # [0, 1], not [0, 1): (255 + u) / 256 rounds to 1.0 in float32 for u within 2^-17 of 1
        if not torch.isfinite(x).all() or (x < 0).any() or (x > 1).any():
            raise DataError('batch["x"] must hold dequantized pixels in [0, 1]')
        label = batch.get("label")
        if label is None:
            label = torch.full((x.shape[0],), -1, dtype=torch.long, device=p.device)
        if label.shape != (x.shape[0],) or label.is_floating_point():
            raise DataError(f'batch["label"] must be an integer tensor of shape ({x.shape[0]},), got '
                            f"{label.dtype} {tuple(label.shape)}")
        label = label.to(device=p.device, dtype=torch.long)
        if self.n_classes == 0:
            return x, torch.full_like(label, -1)
        if ((label < -1) | (label >= self.n_classes)).any():
            raise DataError(f"labels must be in [0, {self.n_classes}) or -1 (unlabelled); a class never seen in training?")
        return x, label

    def _prior_log_prob(self, top: Tensor, zs: list[Tensor], hs: list[Tensor], label: Tensor | None) -> Tensor:
        """log p(z | label) summed over every latent: (B,)."""
        lp = gaussian_log_prob(top, *self.top(top.shape[0], label))
        for split, z, h in zip(self.splits, zs, hs):
            lp = lp + gaussian_log_prob(z, *split(h, label))
        return lp

    def _log_prob_given(self, x: Tensor, label: Tensor | None) -> Tensor:
        """log p(x | label) (B,), every label in [0, K) (or None when K == 0)."""
        top, zs, hs, log_det = self.transform(x, label)
        return self._prior_log_prob(top, zs, hs, label) + log_det

    def log_prob(self, batch: Batch) -> Tensor:
        """(B,) log-density of x over [0, 1)^D in nats: log p(x | label), or the class mixture for label -1."""
        x, label = self._unpack(batch)
        if self.n_classes == 0:
            return self._log_prob_given(x, None)
        known = label >= 0
        if bool(known.all()):
            return self._log_prob_given(x, label)
        # unlabelled rows: log sum_k pi_k p(x | k), one pass of the flow per class
        out = x.new_zeros(x.shape[0])
        rows = known.nonzero()[:, 0]
        if len(rows):
            out = out.index_put((rows,), self._log_prob_given(x[rows], label[rows]))
        rows = (~known).nonzero()[:, 0]
        xu = x[rows]
        per_class = torch.stack([self._log_prob_given(xu, torch.full_like(rows, k))
                                 for k in range(self.n_classes)], 1)                        # (B_u, K)
        return out.index_put((rows,), torch.logsumexp(per_class + self.class_log_prior, 1))

    def loss(self, batch: Batch) -> Tensor:
        """Negative log-likelihood in nats per dimension (a scale that suits the loop's gradient clipping)."""
        if not bool(self.initialized):
            self.initialize(batch["x"], batch.get("label"))
        return -self.log_prob(batch).mean() / math.prod(self.spec.event_shape)

    # ---------------------------------------------------------------- set-up
    @torch.no_grad()
    def initialize(self, x: Tensor, label: Tensor | None = None) -> None:
        """Data-dependent ActNorm initialisation from the first ``_INIT_ROWS`` images of x (and labels;
        an unlabelled row i stands in as class i mod K, which only sets the statistics)."""
        n = min(len(x), _INIT_ROWS)
        x, label = self._unpack({"x": x[:n], **({} if label is None else {"label": label[:n]})})
        if self.n_classes > 0:
            fill = torch.arange(n, device=label.device) % self.n_classes
            label = torch.where(label >= 0, label, fill)
        norms = [m for m in self.modules() if isinstance(m, ActNorm)]
        for m in norms:
            m.init_pending = True
        try:
            self.transform(x, label if self.n_classes > 0 else None)
        finally:
            for m in norms:
                m.init_pending = False
        self.initialized.fill_(True)

    def prepare(self, train: Batch) -> None:
        """ActNorm initialisation and the class frequencies (Laplace-smoothed) from the training batch."""
        self.initialize(train["x"], train.get("label"))
        if self.n_classes > 0 and train.get("label") is not None:
            label = train["label"].to(self.class_log_prior.device).long()
            counts = torch.bincount(label[label >= 0].clamp(max=self.n_classes - 1), minlength=self.n_classes)
            freq = (counts.to(self.class_log_prior.dtype) + 1) / (counts.sum() + self.n_classes)
            self.class_log_prior.copy_(torch.log(freq))

    # ---------------------------------------------------------------- sampling
    def _sample_labels(self, n: int, condition: Any, generator: torch.Generator | None) -> Tensor | None:
        device = self.class_log_prior.device
        if condition is None:
            if self.n_classes == 0:
                return None
            return torch.multinomial(self.class_log_prior.exp(), n, replacement=True, generator=generator)
        if self.n_classes == 0:
            raise ConfigError("this model was trained without labels; sample without a condition")
        if not isinstance(condition, dict) or set(condition) != {"label"}:
            raise ConfigError(f'an image condition is {{"label": LongTensor (n,)}}, got {condition!r}')
        label = torch.as_tensor(condition["label"], device=device)
        if label.is_floating_point() or label.dtype == torch.bool:
            raise ConfigError(f"condition labels must be integers, got dtype {label.dtype}")
        label = label.reshape(-1).long()
        if label.numel() == 1:
            label = label.expand(n)
        if label.numel() != n:
            raise ConfigError(f"the condition has {label.numel()} labels; sample({n}, condition=...) needs 1 or {n}")
        if ((label < 0) | (label >= self.n_classes)).any():
            raise ConfigError(f"condition labels must be classes in [0, {self.n_classes}), got {label.unique().tolist()}")
        return label

    @torch.no_grad()
    def sample(self, n: int, *, condition: Batch | None = None, generator: torch.Generator | None = None,
               temperature: float = 1.0) -> Batch:
        """{"x": (n, C, H, W) float32 in [0, 1]}; ``condition={"label": ...}`` fixes the classes."""
        n = check_int("n", n, 1)
        temperature = check_float("temperature", temperature, 0.0)
        label = self._sample_labels(n, condition, generator)
        p = next(self.parameters())

        def gauss(mean: Tensor, log_std: Tensor) -> Tensor:
            eps = torch.randn(mean.shape, generator=generator, device=p.device, dtype=p.dtype)
            return mean + temperature * torch.exp(log_std) * eps

        top = gauss(*self.top(n, label))
        x = self.inverse(top, label, lambda level, h: gauss(*self.splits[level](h, label)))
        return {"x": x.clamp(0.0, 1.0).float()}
