"""A table whose conditional distributions are known, shared by the conditional-sampling tests:

    colour ~ Cat(red 0.2, green 0.3, blue 0.5)
    size   | colour ~ N(mu_colour, 1)                    (well separated means)
    shape  | colour ~ Cat(SHAPE[colour])
    count  | colour ~ Poisson(LAM[colour])               (an integer column; optional)

so p(size, shape | colour) is known exactly and p(colour | size) follows from Bayes' rule.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

P_COLOUR = {"red": 0.2, "green": 0.3, "blue": 0.5}
MU = {"red": -4.0, "green": 0.0, "blue": 4.0}
SHAPES = ["circle", "square", "triangle"]
SHAPE = {"red": [0.7, 0.2, 0.1], "green": [0.1, 0.6, 0.3], "blue": [0.3, 0.3, 0.4]}
LAM = {"red": 2.0, "green": 6.0, "blue": 12.0}


def table(n: int, seed: int = 0, count: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    colour = rng.choice(list(P_COLOUR), n, p=list(P_COLOUR.values()))
    u = rng.random(n)
    shape = np.array(SHAPES)[(u[:, None] > np.cumsum([SHAPE[c] for c in colour], 1)).sum(1)]
    df = pd.DataFrame({"colour": colour, "size": np.array([MU[c] for c in colour]) + rng.standard_normal(n),
                       "shape": shape})
    if count:
        df["count"] = rng.poisson([LAM[c] for c in colour]).astype("int64")
    return df


def bayes_colour(size: float) -> dict[str, float]:
    """p(colour | size) from the true joint."""
    joint = {c: P_COLOUR[c] * math.exp(-0.5 * (size - MU[c]) ** 2) for c in P_COLOUR}
    total = sum(joint.values())
    return {c: v / total for c, v in joint.items()}


def freqs(s: pd.Series, values: list[str]) -> np.ndarray:
    return s.value_counts(normalize=True).reindex(values, fill_value=0.0).to_numpy()
