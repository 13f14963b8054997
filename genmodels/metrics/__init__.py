"""Evaluation metrics: plain functions over numpy arrays and pandas DataFrames.

Image, text and molecule metrics live in ``genmodels.metrics.image``, ``.text`` and ``.molecule``
(imported on use: they need torch, Pillow, RDKit).
"""
from .likelihood import bits_per_dim, nats_to_bits, summarize_log_likelihood
from .samples import c2st_auroc, mmd_rbf, table_to_features
from .tabular import (copy_rate, copy_rate_from_hashes, correlation_difference,
                      distance_to_closest_record, marginal_distances, row_hashes)

__all__ = [
    "summarize_log_likelihood", "bits_per_dim", "nats_to_bits",
    "marginal_distances", "correlation_difference", "distance_to_closest_record",
    "copy_rate", "row_hashes", "copy_rate_from_hashes",
    "table_to_features", "c2st_auroc", "mmd_rbf",
]
