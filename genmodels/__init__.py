"""genmodels: generative models behind one interface: fit, sample, score, evaluate, save, load.

>>> import genmodels as gm
>>> gm.list_models()
['autoregressive', 'diffusion', 'flow', 'gan', 'gmm', 'kde', 'vae']
"""
from . import datasets, errors
from .apps.impute import Imputer
from .evaluate import evaluate
from .model import Model, load
from .registry import list_models

__version__ = "0.1.0"
__all__ = ["Model", "load", "evaluate", "list_models", "datasets", "errors", "Imputer", "__version__"]
