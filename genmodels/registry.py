"""Name -> class tables for families and codecs. A new family is one file plus one line here.

A family name ("vae", "flow", ...) is one idea; each modality has its own class for it (a tabular VAE
reads rows through MLPs, an image VAE through convolutions), so ``FAMILIES`` maps a name to
{modality: class}. ``family(name, modality)`` is the one lookup; aliases ("pixelcnn") resolve first.
"""
from __future__ import annotations

import difflib
import importlib

from .errors import UnknownModelError

# family name -> {modality -> "module:Class"} (imported lazily so `import genmodels` stays fast)
FAMILIES: dict[str, dict[str, str]] = {
    "gmm": {"tabular": "genmodels.families.gmm:GMM"},
    "kde": {"tabular": "genmodels.families.kde:KDE"},
    "flow": {"tabular": "genmodels.families.flow:Flow",
             "image": "genmodels.families.image_flow:ImageFlow"},
    "vae": {"tabular": "genmodels.families.vae:VAE",
            "image": "genmodels.families.image_vae:ImageVAE"},
    "autoregressive": {"tabular": "genmodels.families.autoregressive:Autoregressive",
                       "image": "genmodels.families.pixelcnn:PixelCNN"},
    "diffusion": {"tabular": "genmodels.families.diffusion:Diffusion",
                  "image": "genmodels.families.image_diffusion:ImageDiffusion"},
    "gan": {"tabular": "genmodels.families.gan:GAN",
            "image": "genmodels.families.image_gan:ImageGAN"},
    # sequences: one class serves text and molecules (both are token windows)
    "gpt": {"text": "genmodels.families.gpt:GPT", "molecule": "genmodels.families.gpt:GPT"},
    "rnn": {"text": "genmodels.families.rnn:RNN", "molecule": "genmodels.families.rnn:RNN"},
    "ngram": {"text": "genmodels.families.ngram:NGram", "molecule": "genmodels.families.ngram:NGram"},
}

# other names users know a family by
ALIASES: dict[str, str] = {"pixelcnn": "autoregressive"}

# modality -> "module:Class"
CODECS: dict[str, str] = {
    "tabular": "genmodels.codecs.tabular:TabularCodec",
    "image": "genmodels.codecs.image:ImageCodec",
    "text": "genmodels.codecs.text:TextCodec",
    "molecule": "genmodels.codecs.molecule:MoleculeCodec",
}

DEFAULT_FAMILY: dict[str, str] = {"tabular": "flow", "image": "autoregressive", "text": "gpt", "molecule": "gpt"}


def _load(path: str):
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def suggest(name: object, known) -> str:
    """ "; did you mean 'x'?" for the closest known name, or "" when none is close."""
    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def canonical(name: str) -> str:
    """The registered name of ``name`` (aliases resolved), or UnknownModelError with the list."""
    name = ALIASES.get(name, name)
    if name not in FAMILIES:
        known = list(FAMILIES) + list(ALIASES)
        raise UnknownModelError(f"unknown model family {name!r}{suggest(name, known)} "
                                f"(known families: {', '.join(sorted(known))})")
    return name


def family(name: str, modality: str = "tabular"):
    """The class of family ``name`` for ``modality``."""
    classes = FAMILIES[canonical(name)]
    if modality not in classes:
        codec(modality)  # validates the modality's name
        able = sorted(n for n, m in FAMILIES.items() if modality in m)
        raise UnknownModelError(f"the {name!r} family has no {modality} version (it handles "
                                f"{', '.join(sorted(classes))}); families for {modality}: {', '.join(able)}")
    return _load(classes[modality])


def family_classes(name: str) -> list:
    """Every modality's class of family ``name`` (to check hyper-parameters before the modality is known)."""
    return [_load(p) for p in FAMILIES[canonical(name)].values()]


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
    return sorted(n for n, m in FAMILIES.items() if modality in m)


def families_where(modality: str, test) -> list[str]:
    """Family names for ``modality`` whose class passes ``test`` (e.g. those that can condition)."""
    return [n for n in list_models(modality) if test(family(n, modality))]
