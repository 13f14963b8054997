"""Discretized logistic likelihoods of 8-bit pixels, single and mixture (PixelCNN++ conventions).

A pixel value k in {0, ..., 255} is mapped to x_k = 2k/255 - 1 in [-1, 1]; bin k covers
[x_k - 1/255, x_k + 1/255], except that bin 0 extends to -inf and bin 255 to +inf, so the 256
masses of a logistic with location ``mean`` and scale s = exp(``log_scale``) sum to exactly 1:

    P(k) = sigmoid((x_k + 1/255 - mean) / s) - sigmoid((x_k - 1/255 - mean) / s)     (0 < k < 255)
    P(0) = sigmoid((x_0 + 1/255 - mean) / s),   P(255) = 1 - sigmoid((x_255 - 1/255 - mean) / s).

Numerics: Salimans et al. guard the interior difference of sigmoids with branches (a pdf-times-
bin-width fallback when the difference underflows). We use the closed form instead, which is exact
and stable everywhere: with a = (x + 1/255 - mean)/s, b = (x - 1/255 - mean)/s and d = a - b = 2/(255 s),

    log(sigmoid(a) - sigmoid(b)) = a - softplus(a) - softplus(b) + log(-expm1(-d)),

and the edge bins are log sigmoid(a) = -softplus(-a) and log(1 - sigmoid(b)) = -softplus(b).

The mixture ("discretized mixture of logistics", PixelCNN++) for a pixel with C channels and M
components shares one component index m over the channels; channel c's location is coupled
linearly to the *values* of the earlier channels of the same pixel:

    p(pixel) = sum_m pi_m prod_c P(k_c; mu_{m,c} + sum_{j<c} tanh(alpha_{m,c,j}) x_{k_j}, s_{m,c}).

The network emits per pixel P = M (1 + 2C + C(C-1)/2) numbers, laid out along dim 1 as
[logits (M) | means (M*C) | log scales (M*C) | coupling (M*C(C-1)/2)] (C=3: 10 M, as PixelCNN++;
C=1: 3 M, no coupling). Coupling coefficient (c, j), j < c, is at index c(c-1)/2 + j.

Sampling is exact (unlike the reference code, which couples to the continuous pre-rounding draw):
pick m by the Gumbel-max trick, then channel by channel draw y = mu + s (log u - log(1 - u)) and
round: k = clamp(round((y + 1) 255/2), 0, 255), which is a draw from the discretized logistic.

References:
    | PixelCNN++: Improving the PixelCNN with Discretized Logistic Mixture Likelihood and Other
    | Modifications (Salimans, Karpathy, Chen, Kingma, 2017), https://arxiv.org/abs/1701.05517
    | Improved Variational Inference with Inverse Autoregressive Flow (Kingma et al., 2016), the
    | discretized logistic, https://arxiv.org/abs/1606.04934

Example:
    >>> pixels = torch.randint(0, 256, (4, 3, 8, 8))
    >>> params = torch.randn(4, mixture_n_params(3, 5), 8, 8)
    >>> discretized_mix_logistic_log_prob(pixels, params, n_mixtures=5).shape    # (4, 8, 8)
    >>> discretized_mix_logistic_sample(params, 3, 5, generator=None).shape      # (4, 3, 8, 8)
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

N_BINS = 256
HALF_BIN = 1.0 / 255.0            # half-width of a bin in the [-1, 1] scaling
MIN_LOG_SCALE = -7.0              # PixelCNN++ floor on log scales


def pixels_to_unit(pixels: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """Integer pixels 0..255 -> bin centres 2k/255 - 1 in [-1, 1] (float of ``dtype``, default float)."""
    return pixels.to(dtype or torch.get_default_dtype()) * (2.0 / 255.0) - 1.0


def discretized_logistic_log_prob(pixels: Tensor, mean: Tensor, log_scale: Tensor, *,
                                  min_log_scale: float = MIN_LOG_SCALE) -> Tensor:
    """Per-pixel log mass of ``pixels`` (LongTensor, 0..255) under a logistic discretized to 256 bins.

    ``mean`` and ``log_scale`` broadcast against ``pixels`` and live in the [-1, 1] scaling;
    ``log_scale`` is clamped below at ``min_log_scale``. Returns a float tensor of the broadcast shape.
    """
    if pixels.is_floating_point():
        raise TypeError("pixels must be an integer tensor of values 0..255 (use .long())")
    log_scale = log_scale.clamp(min=min_log_scale)
    x = pixels_to_unit(pixels, mean.dtype)
    inv_s = torch.exp(-log_scale)
    centered = x - mean
    a = inv_s * (centered + HALF_BIN)              # standardized upper edge
    b = inv_s * (centered - HALF_BIN)              # standardized lower edge
    log_cdf_upper = -F.softplus(-a)                # log sigmoid(a): bin 0
    log_sf_lower = -F.softplus(b)                  # log (1 - sigmoid(b)): bin 255
    d = (2.0 * HALF_BIN) * inv_s                   # a - b > 0
    log_interior = a - F.softplus(a) - F.softplus(b) + torch.log(-torch.expm1(-d))
    return torch.where(pixels == 0, log_cdf_upper,
                       torch.where(pixels == N_BINS - 1, log_sf_lower, log_interior))


def _uniform_open(shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None) -> Tensor:
    """U(0, 1) strictly inside (0, 1), from ``generator``."""
    u = torch.rand(shape, generator=generator, device=like.device, dtype=like.dtype)
    eps = torch.finfo(like.dtype).eps
    return u.clamp(eps, 1.0 - eps)


def _round_to_pixels(y: Tensor) -> Tensor:
    """A real value in the [-1, 1] scaling -> the index of the bin it falls in (edge bins unbounded)."""
    return torch.round((y + 1.0) * (255.0 / 2.0)).clamp(0, N_BINS - 1).long()


def discretized_logistic_sample(mean: Tensor, log_scale: Tensor, generator: torch.Generator | None = None, *,
                                min_log_scale: float = MIN_LOG_SCALE) -> Tensor:
    """Exact draw of pixels (LongTensor, same shape as ``mean``) from the discretized logistic."""
    mean, log_scale = torch.broadcast_tensors(mean, log_scale.clamp(min=min_log_scale))
    u = _uniform_open(tuple(mean.shape), mean, generator)
    y = mean + torch.exp(log_scale) * (torch.log(u) - torch.log1p(-u))
    return _round_to_pixels(y)


# ---------------------------------------------------------------- mixture with channel coupling

def n_coupling(n_channels: int) -> int:
    """Number of coupling coefficients of one component: C(C-1)/2."""
    return n_channels * (n_channels - 1) // 2


def mixture_n_params(n_channels: int, n_mixtures: int) -> int:
    """Width P of the network output per pixel: M (1 + 2C + C(C-1)/2)."""
    return n_mixtures * (1 + 2 * n_channels + n_coupling(n_channels))


def split_mixture_params(params: Tensor, n_channels: int, n_mixtures: int
                         ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(B, P, *S) -> logits (B, M, *S), means (B, M, C, *S), log_scales (B, M, C, *S) (clamped),
    coupling (B, M, C(C-1)/2, *S) in (-1, 1) (tanh applied)."""
    C, M = n_channels, n_mixtures
    P = mixture_n_params(C, M)
    if params.ndim < 2 or params.shape[1] != P:
        raise ValueError(f"mixture parameters must have {P} = M(1 + 2C + C(C-1)/2) channels along dim 1 "
                         f"(C={C}, M={M}); got shape {tuple(params.shape)}")
    B, S = params.shape[0], tuple(params.shape[2:])
    logits, means, log_scales, coeffs = torch.split(params, [M, M * C, M * C, M * n_coupling(C)], dim=1)
    means = means.reshape(B, M, C, *S)
    log_scales = log_scales.reshape(B, M, C, *S).clamp(min=MIN_LOG_SCALE)
    coeffs = torch.tanh(coeffs.reshape(B, M, n_coupling(C), *S))
    return logits, means, log_scales, coeffs


def _coupled_mean(means: Tensor, coeffs: Tensor, values: Tensor, c: int) -> Tensor:
    """Location of channel c: means[:, :, c] + sum_{j<c} coeff(c, j) * values[:, j] (values (B, C, *S))."""
    mu = means[:, :, c]
    base = c * (c - 1) // 2
    for j in range(c):
        mu = mu + coeffs[:, :, base + j] * values[:, j].unsqueeze(1)
    return mu


def discretized_mix_logistic_log_prob(pixels: Tensor, params: Tensor, n_mixtures: int) -> Tensor:
    """Log mass of each pixel (all its channels jointly) under the coupled mixture.

    pixels: LongTensor (B, C, *S) of 0..255; params: (B, P, *S) raw network output.
    Returns (B, *S): logsumexp over components of (log pi_m + sum_c log P(k_c | m, k_<c)).
    """
    if pixels.is_floating_point():
        raise TypeError("pixels must be an integer tensor of values 0..255 (use .long())")
    C = pixels.shape[1]
    logits, means, log_scales, coeffs = split_mixture_params(params, C, n_mixtures)
    values = pixels_to_unit(pixels, params.dtype)                      # (B, C, *S)
    total = F.log_softmax(logits, dim=1)                                   # (B, M, *S)
    for c in range(C):
        mu = _coupled_mean(means, coeffs, values, c)                       # (B, M, *S)
        total = total + discretized_logistic_log_prob(pixels[:, c].unsqueeze(1), mu, log_scales[:, :, c])
    return torch.logsumexp(total, dim=1)


def discretized_mix_logistic_sample(params: Tensor, n_channels: int, n_mixtures: int,
                                    generator: torch.Generator | None = None) -> Tensor:
    """Exact draw of pixels (LongTensor (B, C, *S)) from the coupled mixture given ``params`` (B, P, *S).

    The component is drawn by Gumbel-max, then each channel from its discretized logistic, its
    location coupled to the already drawn (discretized) values of the earlier channels.
    """
    C, M = n_channels, n_mixtures
    logits, means, log_scales, coeffs = split_mixture_params(params, C, M)
    u = _uniform_open(tuple(logits.shape), logits, generator)
    m = torch.argmax(logits - torch.log(-torch.log(u)), dim=1, keepdim=True)          # (B, 1, *S)

    def pick(t: Tensor) -> Tensor:                                                    # (B, M, *S) -> (B, *S)
        return torch.gather(t, 1, m).squeeze(1)

    B, S = params.shape[0], tuple(params.shape[2:])
    out = torch.zeros((B, C, *S), dtype=torch.long, device=params.device)
    values = torch.zeros((B, C, *S), dtype=params.dtype, device=params.device)
    for c in range(C):
        mu = pick(_coupled_mean(means, coeffs, values, c))
        out[:, c] = discretized_logistic_sample(mu, pick(log_scales[:, :, c]), generator)
        values[:, c] = pixels_to_unit(out[:, c], params.dtype)
    return out


def log_mass_offset(n_dims: int) -> float:
    """D log 256: what a discrete family adds to log P(pixels) so the image codec's -D log 256 cancels it."""
    return n_dims * math.log(N_BINS)
