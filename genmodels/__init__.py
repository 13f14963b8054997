"""genmodels: generative models behind one interface: fit, sample, score, evaluate, save, load.

>>> import genmodels as gm
>>> gm.list_models()
['autoregressive', 'diffusion', 'flow', 'gan', 'gmm', 'gpt', 'kde', 'ngram', 'rnn', 'vae']
"""
from . import datasets, errors
from .evaluate import evaluate
from .model import Model, load
from .registry import list_models

__version__ = "0.1.0"

# applications, imported on first use (they pull in scikit-learn)
_APPS = {"AnomalyDetector": "genmodels.apps.anomaly", "Imputer": "genmodels.apps.impute", "OODDetector": "genmodels.apps.ood",
         "augment": "genmodels.apps.augment", "Images": "genmodels.codecs.image"}


def __getattr__(name: str):
    if name in _APPS:
        import importlib
        return getattr(importlib.import_module(_APPS[name]), name)
    raise AttributeError(f"module 'genmodels' has no attribute {name!r}")


__all__ = ["Model", "load", "evaluate", "list_models", "datasets", "errors", "AnomalyDetector", "Imputer", "OODDetector", "augment", "Images",
           "__version__"]
