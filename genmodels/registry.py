"""Name -> class tables for families and codecs. A new family is one file plus one line here."""
from __future__ import annotations

import difflib
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


def suggest(name: object, known) -> str:
    """ "; did you mean 'x'?" for the closest known name, or "" when none is close."""
    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def family(name: str):
    if name not in FAMILIES:
        raise UnknownModelError(f"unknown model family {name!r}{suggest(name, FAMILIES)} "
                                f"(known families: {', '.join(sorted(FAMILIES))})")
    return _load(FAMILIES[name])


def codec(modality: str):
    if modality not in CODECS:
        raise UnknownModelError(f"unknown modality {modality!r}{suggest(modality, CODECS)} "
                                f"(known modalities: {', '.join(sorted(CODECS))})")
    return _load(CODECS[modality])


def list_models(modality: str | None = None) -> list[str]:
    """Registered family names, optionally only those that handle ``modality``."""
    if modality is None:
        return sorted(FAMILIES)
    codec(modality)  # validates the name
    return sorted(n for n in FAMILIES if modality in family(n).modalities)
