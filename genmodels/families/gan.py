"""GAN: a conditional tabular GAN in the CTGAN tradition (WGAN-GP critic with PacGAN packing).

What the two networks see is CTGAN's *row vector* of F = D + D*M + sum(m_k) numbers:

* each real-valued slot d by **mode-specific normalisation**: a 1-D Gaussian mixture with at most
  M = ``n_modes`` modes is fitted per slot in ``prepare`` (EM for 1..M modes, the number chosen by
  BIC where CTGAN uses a Dirichlet-process prior; unused modes get weight 0 and are switched off); a value
  x becomes its mode j (a one-hot, drawn from the posterior while training) and
  alpha = (x - mu_j) / (4 sigma_j). ``normalize``/``denormalize`` are exact inverses.
* each discrete slot k by a one-hot of its m_k values.

The generator (residual MLP) maps noise (``embedding_dim``) and a **conditional vector** to that
row vector: tanh for alpha, straight-through Gumbel-softmax (tau 0.2; CTGAN feeds the soft one,
but exact one-hots leave the critic no softness to tell fake from real) for modes and categories.
The conditional
vector holds the one-hot of a value for some discrete slots and zeros for the others. CTGAN's
**training-by-sampling** picks one slot per row uniformly and a value by log-frequency; here the
rows are drawn from the loop's batch (rows of value v weighted by p_log(v) / count_batch(v), so
values present are drawn by log-frequency), and -- our generalisation -- each *other* discrete slot
of the same real row joins the condition with probability ``EXTRA_COND``, so conditions on several
categorical columns are ones the generator has seen. A cross-entropy penalty makes the generator
honour the condition; the critic sees [row vector, conditional vector] of a fake row and of the
real row the condition came from. Unconditional sampling draws a condition as CTGAN does (one slot,
a value by its training frequency); in every sample the conditioned slots are set to the condition.

The critic is an MLP (LeakyReLU 0.2, dropout 0.5) over ``pac`` rows packed into one input (PacGAN),
trained by WGAN-GP (penalty weight ``gp_weight``); ``n_critic`` critic steps per generator step.

A GAN's losses say nothing about sample quality, so ``loss(batch)`` is the **validation metric**
used by the loop for early stopping and for keeping the best weights: the energy distance between
the batch and as many generated rows (fixed internal seed, so epochs compare), both as
[x (standardised), one-hot c] vectors (the loop averages it over chunks of 4 x batch_size rows of
the held-out split). Lower is better; 0 for identical samples. No likelihood: ``log_prob`` raises
``NoLikelihoodError``. Without a validation split the loop can only rank epochs by the generator's
loss, which is no quality signal: keep ``validation > 0`` for this family.

References:
    | Modeling Tabular Data using Conditional GAN (Xu et al., 2019) https://arxiv.org/abs/1907.00503
    | Improved Training of Wasserstein GANs (Gulrajani et al., 2017) https://arxiv.org/abs/1704.00028
    | PacGAN: The power of two samples in GANs (Lin et al., 2018) https://arxiv.org/abs/1712.04086

Example:
    >>> gan = GAN(Spec(n_continuous=2, cardinalities=(3,)), hidden=(32,), critic_hidden=(32,), pac=2)
    >>> gan.sample(4, generator=torch.Generator().manual_seed(0))["c"].shape
    torch.Size([4, 1])
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core import (Batch, GenerativeModule, Likelihood, Spec, check_float, check_int, check_sample_args,
                    check_spec, check_widths, unpack)
from ..errors import ConfigError, DataError, NoLikelihoodError
from ..nets.mlp import mlp, one_hot_slots

TAU = 0.2               # Gumbel-softmax temperature (CTGAN)
HARD = True             # straight-through: the critic sees exact one-hots, gradients flow through the soft ones
EXTRA_COND = 0.2        # chance that each other discrete slot joins a training condition
VAL_SEED = 12345        # fixed noise for the validation metric
MAX_FIT_ROWS = 5000     # rows per slot given to the 1-D mixture fit
MIN_MODE_WEIGHT = 0.005  # modes lighter than this are switched off (CTGAN's threshold)
CAN_CONDITION_ON_NUMBERS = "gmm, autoregressive, diffusion, kde"


def energy_distance(a: Tensor, b: Tensor) -> Tensor:
    """V-statistic energy distance 2 E|A-B| - E|A-A'| - E|B-B'| between (n, F) and (m, F); >= 0."""
    return (2 * torch.cdist(a, b).mean() - torch.cdist(a, a).mean() - torch.cdist(b, b).mean()).clamp(min=0)


def fit_modes(x: Tensor, n_modes: int, iters: int = 100, tol: float = 1e-5) -> tuple[Tensor, Tensor, Tensor]:
    """A 1-D Gaussian mixture per column of x (N, D) by EM, with 1..n_modes modes chosen by BIC.

    Returns means, stds, weights, each (D, n_modes); unused modes (and modes lighter than
    MIN_MODE_WEIGHT) have weight 0. All columns are fitted at once for each number of modes; the
    search stops once every column's BIC has failed to improve for two more modes.
    """
    N, D = x.shape
    if N < 2:                                                                  # nothing to fit: one N(x, 1) mode
        return (F.pad(x.mean(0, keepdim=True).T, (0, n_modes - 1)), torch.ones(D, n_modes, dtype=x.dtype),
                F.one_hot(torch.zeros(D, dtype=torch.long), n_modes).to(x.dtype))
    floor = (1e-3 * x.std(0)).clamp(min=1e-6)                                  # (D,) smallest std
    best_bic, best_k = torch.full((D,), math.inf, dtype=x.dtype), torch.zeros(D)
    out = (torch.zeros(D, n_modes, dtype=x.dtype), torch.ones(D, n_modes, dtype=x.dtype),
           torch.zeros(D, n_modes, dtype=x.dtype))
    for k in range(1, min(n_modes, N) + 1):
        if bool((best_k + 2 < k).all()):
            break
        q = (torch.arange(k, dtype=x.dtype) + 0.5) / k
        mu = torch.quantile(x, q, dim=0).T.contiguous()                        # (D, k) spread over the data
        sd = (x.std(0)[:, None] / k).clamp(min=1e-6).expand(D, k)
        logw, prev = torch.full((D, k), -math.log(k), dtype=x.dtype), None
        for _ in range(iters):
            logp = logw - sd.log() - 0.5 * ((x[:, :, None] - mu) / sd) ** 2 - 0.5 * math.log(2 * math.pi)  # (N, D, k)
            ll = torch.logsumexp(logp, dim=-1)                                 # (N, D)
            r = (logp - ll[..., None]).exp()                                   # responsibilities
            nk = r.sum(0) + 1e-10                                              # (D, k)
            mu = (r * x[:, :, None]).sum(0) / nk
            sd = ((r * (x[:, :, None] - mu) ** 2).sum(0) / nk).sqrt().clamp(min=floor[:, None])
            logw = (nk / N).log()
            total = ll.sum(0)                                                  # (D,)
            if prev is not None and bool(((total - prev).abs() < tol * N).all()):
                break
            prev = total
        bic = -2 * total + (3 * k - 1) * math.log(N)
        better = bic < best_bic
        best_bic, best_k = torch.where(better, bic, best_bic), torch.where(better, k, best_k)
        w = logw.exp().masked_fill(logw.exp() < MIN_MODE_WEIGHT, 0.0)
        for buf, v, pad in zip(out, (mu, sd, w / w.sum(1, keepdim=True)), (0.0, 1.0, 0.0)):
            buf[better] = F.pad(v, (0, n_modes - k), value=pad)[better]
    return out


def gradient_penalty(critic: nn.Module, real: Tensor, fake: Tensor, pac: int, eps: Tensor | None = None) -> Tensor:
    """WGAN-GP penalty mean((||grad critic(pack(eps real + (1 - eps) fake))|| - 1)^2) over packs.

    real, fake: (n, F) with n divisible by pac; eps: (n // pac, 1) mixing weights, one per pack.
    """
    n, width = real.shape
    if eps is None:
        eps = torch.rand(n // pac, 1, device=real.device, dtype=real.dtype)
    eps = eps.repeat_interleave(pac, dim=0)                                  # (n, 1): one weight per pack
    mixed = (eps * real + (1 - eps) * fake).requires_grad_(True)            # (n, F)
    out = critic(mixed.reshape(n // pac, pac * width))                      # (n / pac, 1)
    (grad,) = torch.autograd.grad(out.sum(), mixed, create_graph=True)
    return ((grad.reshape(n // pac, pac * width).norm(dim=1) - 1) ** 2).mean()


class _Residual(nn.Module):
    """CTGAN's residual block: [relu(norm(W h)), h]. LayerNorm, not BatchNorm, so train and eval
    mode sample the same rows (a loaded model is never in a different mode than a fitted one)."""

    def __init__(self, width: int, out: int):
        super().__init__()
        self.fc, self.norm = nn.Linear(width, out), nn.LayerNorm(out)

    def forward(self, h: Tensor) -> Tensor:
        return torch.cat([F.relu(self.norm(self.fc(h))), h], dim=-1)


class GAN(GenerativeModule):
    """Conditional tabular WGAN-GP (CTGAN-style); no likelihood, conditional on discrete slots.

    Arguments:
        spec: the codec's description of the tensors.
        embedding_dim: width of the generator's noise.
        hidden: widths of the generator's residual blocks.
        critic_hidden: hidden widths of the critic.
        n_modes: most modes per real-valued slot in mode-specific normalisation.
        pac: rows packed into one critic input (PacGAN); batches are resampled to a multiple of it.
        gp_weight: weight of the gradient penalty (WGAN-GP's lambda).
        n_critic: critic steps per generator step.
        g_lr, d_lr, g_decay, d_decay: Adam learning rates and L2 weight decays (betas 0.5, 0.9) of
            generator and critic; the loop's ``lr``/``weight_decay`` are not used, its warm-up and
            decay factors are.
    """

    likelihood: ClassVar[Likelihood] = "none"
    closed_form: ClassVar[bool] = False
    conditional: ClassVar[bool] = True
    modalities: ClassVar[tuple[str, ...]] = ("tabular",)

    def __init__(self, spec: Spec, embedding_dim: int = 128, hidden: Sequence[int] = (256, 256),
                 critic_hidden: Sequence[int] = (256, 256), n_modes: int = 10, pac: int = 10,
                 gp_weight: float = 10.0, n_critic: int = 1, g_lr: float = 2e-4, d_lr: float = 2e-4,
                 g_decay: float = 1e-6, d_decay: float = 1e-6):
        check_spec(spec, "gan")
        cfg = dict(embedding_dim=check_int("embedding_dim", embedding_dim, 1), hidden=check_widths("hidden", hidden),
                   critic_hidden=check_widths("critic_hidden", critic_hidden), n_modes=check_int("n_modes", n_modes, 1),
                   pac=check_int("pac", pac, 1), gp_weight=check_float("gp_weight", gp_weight, 0.0),
                   n_critic=check_int("n_critic", n_critic, 1),
                   g_lr=check_float("g_lr", g_lr, 0.0, open_low=True),
                   d_lr=check_float("d_lr", d_lr, 0.0, open_low=True),
                   g_decay=check_float("g_decay", g_decay, 0.0), d_decay=check_float("d_decay", d_decay, 0.0))
        super().__init__(spec, **cfg)
        D, M, cards = spec.n_continuous, cfg["n_modes"], tuple(spec.cardinalities)
        self.D, self.M, self.K, self.cards, self.pac = D, M, len(cards), cards, cfg["pac"]
        self.C = sum(cards)                                       # width of one-hot c and of the condition
        self.F = D + D * M + self.C                               # width of the row vector
        # Mode-specific normalisation (set by prepare): one mode N(0, 1) until then.
        self.register_buffer("mode_means", torch.zeros(D, M))
        self.register_buffer("mode_stds", torch.ones(D, M))
        self.register_buffer("mode_weights", F.one_hot(torch.zeros(D, dtype=torch.long), M).float())
        self.register_buffer("cat_counts", torch.ones(self.C))   # training counts of every value of every slot
        slot_of = torch.repeat_interleave(torch.arange(self.K), torch.tensor(cards, dtype=torch.long))
        self.register_buffer("card_index", slot_of, persistent=False)   # (C,) slot of each one-hot column
        width, blocks = cfg["embedding_dim"] + self.C, []
        for h in cfg["hidden"]:
            blocks.append(_Residual(width, h))
            width += h
        self.generator = nn.Sequential(*blocks, nn.Linear(width, self.F))
        self.critic = mlp(self.pac * (self.F + self.C), 1, cfg["critic_hidden"],
                          activation=lambda: nn.LeakyReLU(0.2), dropout=0.5)

    # -- mode-specific normalisation -------------------------------------------------------------

    def prepare(self, train: Batch) -> None:
        """Fit a 1-D Gaussian mixture per real-valued slot and count the values of each discrete slot."""
        x, c = unpack(self.spec, train)
        if self.D:
            x = x.detach().double().cpu()
            if x.shape[0] > MAX_FIT_ROWS:
                x = x[torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))[:MAX_FIT_ROWS]]
            means, stds, weights = fit_modes(x, self.M)
            for buf, v in ((self.mode_means, means), (self.mode_stds, stds), (self.mode_weights, weights)):
                buf.copy_(v.to(buf))
        if self.K:
            self.cat_counts.copy_(one_hot_slots(c, self.cards).sum(0).to(self.cat_counts))

    def normalize(self, x: Tensor, generator: torch.Generator | None = None,
                  sample: bool = False) -> tuple[Tensor, Tensor]:
        """x (B, D) -> alpha (B, D) and mode (B, D): the most likely mode, or one drawn from the posterior."""
        z = (x[..., None] - self.mode_means) / self.mode_stds                       # (B, D, M)
        logp = self.mode_weights.log() - 0.5 * z ** 2 - self.mode_stds.log()       # -inf where switched off
        if sample:
            mode = torch.multinomial(logp.softmax(-1).reshape(-1, self.M), 1, generator=generator).view(x.shape)
        else:
            mode = logp.argmax(-1)                                                   # (B, D)
        mu, sd = self.mode_means.gather(1, mode.T).T, self.mode_stds.gather(1, mode.T).T
        return (x - mu) / (4 * sd), mode

    def denormalize(self, alpha: Tensor, mode: Tensor) -> Tensor:
        """The inverse of ``normalize``: (B, D), (B, D) -> x (B, D)."""
        return alpha * 4 * self.mode_stds.gather(1, mode.T).T + self.mode_means.gather(1, mode.T).T

    def row_vector(self, x: Tensor, c: Tensor, sample: bool = True) -> Tensor:
        """Real rows as the networks see them: [alpha (D), mode one-hots (D*M), category one-hots]: (B, F)."""
        alpha, mode = self.normalize(x, sample=sample)
        modes = F.one_hot(mode, self.M).to(x.dtype).reshape(x.shape[0], -1)          # (B, D*M)
        return torch.cat([alpha, modes, one_hot_slots(c, self.cards).to(x)], dim=1)

    # -- conditions ------------------------------------------------------------------------------

    def cond_vector(self, cond: Tensor) -> Tensor:
        """(n, K) codes, -1 where free -> (n, C): one-hots of the conditioned slots, zeros elsewhere."""
        on = (cond >= 0).float()[:, self.card_index]                                  # (n, C)
        return one_hot_slots(cond.clamp(min=0), self.cards).to(on) * on

    def _train_conditions(self, c: Tensor, n: int) -> tuple[Tensor, Tensor]:
        """Training-by-sampling in the batch c (B, K): real row indices (n,) and conditions (n, K)."""
        B = c.shape[0]
        if self.K == 0:
            return torch.randint(B, (n,), device=c.device), c.new_zeros(n, 0)
        slot = torch.randint(self.K, (n,), device=c.device)                           # one slot per row
        idx = torch.zeros(n, dtype=torch.long, device=c.device)
        for k, (start, m) in enumerate(zip(self._offsets(), self.cards)):
            rows = slot == k
            if rows.any():
                p_log = torch.log1p(self.cat_counts[start:start + m])                 # (m,) CTGAN's log-frequency
                in_batch = torch.bincount(c[:, k], minlength=m).float()               # (m,)
                w = (p_log / in_batch.clamp(min=1))[c[:, k]]                          # (B,) value v ~ p_log(v)
                idx[rows] = torch.multinomial(w, int(rows.sum()), replacement=True)
        keep = torch.rand(n, self.K, device=c.device) < EXTRA_COND
        keep[torch.arange(n), slot] = True
        return idx, torch.where(keep, c[idx], -1)

    def _offsets(self) -> list[int]:
        return [sum(self.cards[:k]) for k in range(self.K)]

    def _check_condition(self, n: int, condition: Batch) -> Tensor:
        """(n, K) codes, -1 where free; ConfigError for a condition on a real-valued slot."""
        xr, cr = condition.get("x"), condition.get("c")
        if xr is not None and tuple(xr.shape) != (n, self.D):
            raise DataError(f"the condition's x has shape {tuple(xr.shape)}; sample({n}, condition=...) "
                            f"needs ({n}, {self.D})")
        if xr is not None and not torch.isnan(xr).all():
            raise ConfigError("the gan family conditions only on categorical and boolean columns (through its "
                              f"conditional vector), not on numbers; families that can: {CAN_CONDITION_ON_NUMBERS}")
        cr = torch.full((n, self.K), -1, dtype=torch.long) if cr is None else cr
        if tuple(cr.shape) != (n, self.K):
            raise DataError(f"the condition's c has shape {tuple(cr.shape)}; sample({n}, condition=...) "
                            f"needs ({n}, {self.K})")
        if (cr < -1).any():
            raise DataError("condition codes must be -1 (free) or a valid category index")
        unpack(self.spec, {"x": torch.zeros(n, self.D), "c": cr.clamp(min=0)})      # codes below the cardinality
        return cr.to(self.device)

    # -- the generator ---------------------------------------------------------------------------

    def raw_output(self, cond: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Generator outputs for conditions (n, K): (n, F), alpha pre-tanh, then mode and category logits."""
        D, M = self.D, self.M
        z = torch.randn(cond.shape[0], self.config["embedding_dim"], generator=generator, device=cond.device)
        raw = self.generator(torch.cat([z, self.cond_vector(cond)], dim=1))               # (n, F)
        off = (self.mode_weights <= 0).reshape(1, -1)           # switched-off modes: -1e4, finite (no NaN grads)
        return torch.cat([raw[:, :D], raw[:, D:D + D * M].masked_fill(off, -1e4), raw[:, D + D * M:]], dim=1)

    def generate(self, cond: Tensor) -> tuple[Tensor, Tensor]:
        """Fake rows for training: the activated row vector (n, F) (tanh, Gumbel-softmax one-hots) and
        the raw outputs (n, F). The Gumbel noise comes from torch's global generator (seeded by fit)."""
        raw = self.raw_output(cond)
        n, D, M = raw.shape[0], self.D, self.M
        parts = [torch.tanh(raw[:, :D]),
                 F.gumbel_softmax(raw[:, D:D + D * M].reshape(n, D, M), tau=TAU, hard=HARD, dim=-1).reshape(n, D * M)]
        start = D + D * M
        for m in self.cards:
            parts.append(F.gumbel_softmax(raw[:, start:start + m], tau=TAU, hard=HARD, dim=-1))
            start += m
        return torch.cat(parts, dim=1), raw

    def _cond_penalty(self, raw: Tensor, cond: Tensor) -> Tensor:
        """Cross-entropy of the generator's categories against the conditioned values, summed over slots, per row."""
        total, start = raw.new_zeros(()), self.D + self.D * self.M
        for k, m in enumerate(self.cards):
            on = cond[:, k] >= 0
            ce = F.cross_entropy(raw[:, start:start + m], cond[:, k].clamp(min=0), reduction="none")
            total, start = total + (ce * on).sum(), start + m
        return total / raw.shape[0]

    # -- training: the per-step hook of the one loop (train.py) ----------------------------------

    def configure_optimizers(self, lr: float, weight_decay: float) -> list[torch.optim.Optimizer]:
        """Adam for generator and critic with CTGAN's settings; the loop's lr/weight_decay are not used."""
        c = self.config
        return [torch.optim.Adam(net.parameters(), lr=c[f"{p}_lr"], betas=(0.5, 0.9), weight_decay=c[f"{p}_decay"],
                                 foreach=True) for net, p in ((self.generator, "g"), (self.critic, "d"))]

    def _score(self, rows: Tensor, cond: Tensor) -> Tensor:
        """Critic on packs of rows: [row vector, condition] (n, F + C) -> (n / pac, 1)."""
        v = torch.cat([rows, self.cond_vector(cond)], dim=1)
        return self.critic(v.reshape(-1, self.pac * v.shape[1]))

    def training_step(self, batch: Batch, step: int, optimizers: list[torch.optim.Optimizer]) -> dict[str, float]:
        """``n_critic`` WGAN-GP critic steps, then one generator step (adversarial + condition loss)."""
        opt_g, opt_d = optimizers
        x, c = unpack(self.spec, batch, dtype=self.mode_means.dtype)
        n = math.ceil(x.shape[0] / self.pac) * self.pac                                # rows per step, packable
        for _ in range(self.config["n_critic"]):
            idx, cond = self._train_conditions(c, n)
            real = self.row_vector(x[idx], c[idx])                                     # (n, F)
            fake = self.generate(cond)[0].detach()                                     # (n, F)
            cv = self.cond_vector(cond)
            gp = self.config["gp_weight"] * gradient_penalty(
                self.critic, torch.cat([real, cv], 1), torch.cat([fake, cv], 1), self.pac)
            d_loss = self._score(fake, cond).mean() - self._score(real, cond).mean() + gp
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
        _, cond = self._train_conditions(c, n)
        fake, raw = self.generate(cond)
        g_loss = -self._score(fake, cond).mean() + self._cond_penalty(raw, cond)
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        if not (torch.isfinite(g_loss) and torch.isfinite(d_loss)):
            raise FloatingPointError(f"the GAN losses became {float(g_loss)} / {float(d_loss)} at step {step}; "
                                     "lower g_lr/d_lr")
        return {"loss": g_loss.item(), "d_loss": d_loss.item(), "gp": gp.item()}

    @torch.no_grad()
    def loss(self, batch: Batch) -> Tensor:
        """Validation metric: energy distance between the batch and as many generated rows (fixed seed),
        both as [x, one-hot c]; lower is better, 0 for identical samples."""
        x, c = unpack(self.spec, batch, dtype=self.mode_means.dtype, device=self.device)
        fake = self.sample(x.shape[0], generator=torch.Generator(self.device).manual_seed(VAL_SEED))
        as_vec = lambda xx, cc: torch.cat([xx, one_hot_slots(cc, self.cards).to(x)], dim=1)  # noqa: E731
        return energy_distance(as_vec(x, c), as_vec(fake["x"].to(x), fake["c"]))

    # -- the GenerativeModule interface ----------------------------------------------------------

    def log_prob(self, batch: Batch) -> Tensor:
        raise NoLikelihoodError("the gan family has no likelihood; score data with gmm, flow, vae, "
                                "autoregressive, diffusion or kde")

    @torch.no_grad()
    def sample(self, n: int, *, condition: Batch | None = None,
               generator: torch.Generator | None = None) -> Batch:
        """Draw n rows; with ``condition`` (x NaN everywhere, c -1 where free) conditioned slots are kept."""
        n = check_sample_args("gan", n, condition, conditional=True)
        dev, D, M = self.device, self.D, self.M
        if condition is not None:
            cond = self._check_condition(n, condition)
        elif self.K:   # CTGAN's unconditional draw: one slot, a value by its training frequency
            cond = torch.full((n, self.K), -1, dtype=torch.long, device=dev)
            slot = torch.randint(self.K, (n,), generator=generator, device=dev)
            for k, (start, m) in enumerate(zip(self._offsets(), self.cards)):
                draw = torch.multinomial(self.cat_counts[start:start + m], n, replacement=True, generator=generator)
                cond[:, k] = torch.where(slot == k, draw, -1)
        else:
            cond = torch.zeros(n, 0, dtype=torch.long, device=dev)
        raw = self.raw_output(cond, generator)                                         # (n, F)
        alpha, mode = torch.tanh(raw[:, :D]), torch.zeros(n, D, dtype=torch.long, device=dev)
        if D:
            mode = torch.multinomial(raw[:, D:D + D * M].reshape(n * D, M).softmax(-1), 1,
                                     generator=generator).view(n, D)
        c, start = torch.zeros(n, self.K, dtype=torch.long, device=dev), D + D * M
        for k, m in enumerate(self.cards):
            c[:, k] = torch.multinomial(raw[:, start:start + m].softmax(-1), 1, generator=generator)[:, 0]
            start += m
        c = torch.where(cond >= 0, cond, c)
        return {"x": self.denormalize(alpha, mode), "c": c}
