"""Name -> class tables for families and codecs. A new family is one file plus one line here."""
from __future__ import annotations

import importlib

from .errors import UnknownModelError

# family name -> "module:Class" (imported lazily so `import genmodels` stays fast)
FAMILIES: dict[str, str] = {
    "gmm": "genmodels.families.gmm:GMM",
    "kde": "genmodels.families.kde:KDE",
    "flow": "genmodels.families.flow:Flow",
    "vae": "genmodels.families.vae:VAE",
    "autoregressive": "genmodels.families.autoregressive:Autoregressive",
    "diffusion": "genmodels.families.diffusion:Diffusion",
    "gan": "genmodels.families.gan:GAN",
}

# modality -> "module:Class"
CODECS: dict[str, str] = {
    "tabular": "genmodels.codecs.tabular:TabularCodec",
}

DEFAULT_FAMILY: dict[str, str] = {"tabular": "flow"}


def _load(path: str):
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def family(name: str):
    if name not in FAMILIES:
        raise UnknownModelError(f"unknown model family {name!r}; known families: {', '.join(sorted(FAMILIES))}")
    return _load(FAMILIES[name])


def codec(modality: str):
    if modality not in CODECS:
        raise UnknownModelError(f"unknown modality {modality!r}; known modalities: {', '.join(sorted(CODECS))}")
    return _load(CODECS[modality])


def list_models(modality: str | None = None) -> list[str]:
    """Registered family names, optionally only those that handle ``modality``."""
    if modality is None:
        return sorted(FAMILIES)
    codec(modality)  # validates the name
    return sorted(n for n in FAMILIES if modality in family(n).modalities)
