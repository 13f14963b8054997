"""The ``genmodels`` command: a thin layer over Model, the registry, data sets and metrics.

    genmodels models [--modality M]
    genmodels datasets
    genmodels fit DATA --model FAMILY --out DIR [--max-time S] [--seed N] [--set key=value ...]
    genmodels sample DIR -n N [-o FILE|FOLDER] [--seed N] [--condition COLUMN=VALUE ...] [--prompt TEXT]
                     [--set OPTION=VALUE] [--force]
    genmodels score DIR DATA -o FILE
    genmodels evaluate DIR DATA [--json] [--train DATA]
    genmodels detect DIR DATA -o FILE [--contamination C]     (genmodels.apps.anomaly)
    genmodels impute DIR DATA -o FILE [--strategy mean|draw]  (genmodels.apps.impute)

DATA is a CSV/Parquet path, a folder of images, a text file (with ``--modality text``), a file of SMILES
(``--modality molecule``) or a built-in data set's name (its training split for ``fit``, its test split for
``score`` and ``evaluate``). A user's mistake prints one line on stderr and exits
with status 2; a bug prints its traceback.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

EXIT_USER_ERROR = 2
MAX_SAMPLE_ROWS = 1_000_000     # `sample -n` above this needs --force
# application modules that add their own command through ``add_cli(subparsers)``
APP_COMMANDS: tuple[str, ...] = ("genmodels.apps.anomaly", "genmodels.apps.impute")
WRITERS = {".csv": lambda df, p: df.to_csv(p, index=False), ".parquet": lambda df, p: df.to_parquet(p, index=False)}


def _console(stderr: bool = False):
    from rich.console import Console
    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _data(arg: str, split: str, size: int | None = None) -> Any:
    """A path as given; a built-in data set's name as that split's data (``size``: sequence sets' subsets)."""
    from . import datasets
    from .errors import DataError
    if Path(arg).exists():
        return arg
    names = [d["name"] for d in datasets.list()]
    if arg in names:
        return getattr(datasets.load(arg, size=size), split)
    raise DataError(f"{arg!r} is neither a file nor a built-in data set; built-in: {', '.join(names)}")


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _pairs(items: Sequence[str], what: str, parse: bool = True) -> dict[str, Any]:
    """key=value pairs; values parsed as JSON when ``parse`` (hyper-parameters), else kept as text
    (column values: the codec reads them in the column's own type, so zip=01234 stays a string)."""
    from .errors import ConfigError
    out = {}
    for item in items or ():
        key, sep, val = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{what} expects key=value, got {item!r}")
        out[key.strip()] = _value(val.strip()) if parse else val.strip()
    return out


def _write(df: pd.DataFrame, path: str) -> None:
    from .errors import ConfigError
    p = Path(path)
    if p.suffix.lower() not in WRITERS:
        raise ConfigError(f"cannot write {p.suffix or 'files without an extension'}; name the output .csv or .parquet")
    p.parent.mkdir(parents=True, exist_ok=True)
    WRITERS[p.suffix.lower()](df, p)


def cmd_models(args: argparse.Namespace) -> None:
    from . import registry
    modalities = [args.modality] if args.modality else sorted(registry.CODECS)
    rows = [(name, m, registry.family(name, m)) for m in modalities for name in registry.list_models(m)]
    width = max(len(name) for name, _, _ in rows)
    for name, m, cls in rows:
        cond = "yes" if cls.conditional else "no"
        print(f"{name:{width}s}  modality={m:8s} likelihood={cls.likelihood:5s}  conditional={cond}")
    aliases = {a: n for a, n in registry.ALIASES.items() if any(n == r[0] for r in rows)}
    if aliases:
        print("aliases: " + ", ".join(f"{a} = {n}" for a, n in aliases.items()))


def cmd_datasets(args: argparse.Namespace) -> None:
    from rich.table import Table

    from . import datasets
    table = Table("name", "modality", "rows", "columns", "description")
    for d in datasets.list():
        table.add_row(d["name"], d["modality"], str(d["rows"]), str(d["columns"]), d["description"])
    _console().print(table)


def cmd_fit(args: argparse.Namespace) -> None:
    from .model import Model
    hyper = _pairs(args.set, "--set")
    codec = _pairs(args.codec, "--codec")
    if args.kind:
        codec["column_kinds"] = _pairs(args.kind, "--kind", parse=False)
    modality = args.modality or _builtin_modality(args.data)
    model = Model(args.model, modality=modality, seed=args.seed, device=args.device, num_threads=args.threads,
                  codec=codec, **hyper)
    data = _data(args.data, "train", size=args.size)
    model.fit(data, max_time=args.max_time, max_epochs=args.max_epochs, max_steps=args.max_steps,
              validation=args.validation, verbose=not args.quiet, resume=args.resume, checkpoint_dir=args.out)
    model.save(args.out)
    info = model.fit_info_
    unit = {"image": "images", "text": "documents", "molecule": "molecules"}.get(model.modality_, "rows")
    unit = unit[:-1] if info["rows"] == 1 else unit
    _console(stderr=True).print(f"fitted {args.model} ({model.likelihood} likelihood) on {info['rows']} {unit} in "
                                f"{info['fit_seconds']:.1f}s ({info['stopped']}); saved to {args.out}")


def cmd_sample(args: argparse.Namespace) -> None:
    from .errors import ConfigError
    from .model import load
    if args.n > MAX_SAMPLE_ROWS and not args.force:
        raise ConfigError(f"-n {args.n} is more than {MAX_SAMPLE_ROWS:,} rows, which may exhaust memory and disk; "
                          "add --force to draw them anyway, or sample in several smaller runs with different --seed")
    model = load(args.model_dir, device=args.device)
    options = _pairs(args.set, "--set")
    if args.prompt is not None:
        options["prompt"] = args.prompt
    if args.output is None and model.modality_ not in ("text", "molecule"):
        raise ConfigError(f"-o is needed for {model.modality_} samples ("
                          f"{'a .csv or .parquet file' if model.modality_ == 'tabular' else 'a folder, a .png grid or .npy'})")
    out = model.sample(args.n, seed=args.seed, condition=_pairs(args.condition, "--condition", parse=False) or None,
                       **options)
    note = SAMPLE_WRITERS[model.modality_](model, out, args.output)
    stats = model.sample_stats_
    if stats["drawn"] > stats["kept"]:              # rejection sampling (e.g. --set canonical_only=true)
        note += f" (kept {stats['kept']:,} of {stats['drawn']:,} drawn)"
    _console(stderr=True).print(note)


def _write_rows(model: Any, out: Any, path: str) -> str:
    if isinstance(out, np.ndarray):
        out = pd.DataFrame(out, columns=[c.name for c in model.codec_.columns_])
    _write(out, path)
    return f"wrote {len(out)} rows to {path}"


def _write_images(model: Any, out: np.ndarray, path: str) -> str:
    """A folder of PNG files and grid.png, or one .npy array, or one .png grid."""
    from .codecs.image import save_grid, write_png
    p = Path(path)
    if p.suffix.lower() == ".npy":
        p.parent.mkdir(parents=True, exist_ok=True)
        np.save(p, out)
        return f"wrote {len(out)} images as an array {out.shape} to {p}"
    if p.suffix.lower() == ".png":
        save_grid(out, p)
        return f"wrote a grid of {len(out)} images to {p}"
    write_png(out, p)
    save_grid(out[:256], p / "grid.png")
    return f"wrote {len(out)} PNG images and grid.png to {p}/"


def _write_strings(model: Any, out: list, path: str | None) -> str:
    """Texts (separated by a line of dashes) or SMILES (one per line, "<invalid>" for an invalid one) on
    stdout or into a .txt file; .json writes the list itself (invalid molecules as null)."""
    from .errors import ConfigError
    if path is not None and Path(path).suffix.lower() == ".json":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(out, indent=1, ensure_ascii=False), encoding="utf-8")
        return f"wrote {len(out)} samples to {path}"
    if model.modality_ == "molecule":
        body = "".join(f"{s if s is not None else '<invalid>'}\n" for s in out)
    else:
        body = "".join(f"{s}\n{'-' * 40}\n" for s in out)
    if path is None:
        sys.stdout.write(body)
        invalid = sum(s is None for s in out)
        return f"{len(out)} samples" + (f", {invalid} invalid" if model.modality_ == "molecule" else "")
    if Path(path).suffix.lower() not in (".txt", ".smi"):
        raise ConfigError(f"cannot write {model.modality_} samples to {Path(path).suffix or 'a file without an extension'}; "
                          "name the output .txt or .json (or leave -o out to print them)")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(body, encoding="utf-8")
    return f"wrote {len(out)} samples to {path}"


SAMPLE_WRITERS = {"tabular": _write_rows, "image": _write_images, "text": _write_strings,
                  "molecule": _write_strings}


def _builtin_modality(arg: str) -> str | None:
    """The modality of a built-in data set named ``arg`` (None for a path)."""
    from . import datasets
    if Path(arg).exists():
        return None
    return next((d["modality"] for d in datasets.list() if d["name"] == arg), None)


def cmd_score(args: argparse.Namespace) -> None:
    from .model import load
    model = load(args.model_dir, device=args.device)
    data = _data(args.data, "test")
    lp = model.log_prob(data)
    column = "log_likelihood" if model.likelihood == "exact" else "log_likelihood_bound"
    table = pd.DataFrame({column: lp})
    extra = ""
    if model.modality_ == "image":                  # nats per image, and the field's unit
        from .metrics.likelihood import bits_per_dim
        table["bits_per_dim"] = bits_per_dim(lp, model.codec_.n_dims)
        extra = f", {table['bits_per_dim'].mean():.4f} bits/dim"
    if model.modality_ == "text":                   # nats per document, and bits per character
        chars = model.codec_.n_characters(model.codec_.coerce(data))
        table["characters"] = chars
        extra = f", {-lp.sum() / max(1, chars.sum()) / np.log(2):.4f} bits/char"
    _write(table, args.output)
    _console(stderr=True).print(f"wrote {len(lp)} {column} values (nats per example, mean {lp.mean():.4f}{extra}) "
                                f"to {args.output}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from .evaluate import evaluate
    from .model import load
    model = load(args.model_dir, device=args.device)
    train = _data(args.train, "train") if args.train else None
    if train is None and model.modality_ != "tabular" and not Path(args.data).exists():
        train = _data(args.data, "train")       # a built-in set: its training split is the reference
    metrics = evaluate(model, _data(args.data, "test"), train=train, seed=args.seed)
    if args.json:
        print(json.dumps(metrics, indent=2))
        return
    from rich.table import Table
    table = Table("metric", "value", title=f"{model.family} on {args.data}")
    for k, v in metrics.items():
        table.add_row(k, f"{v:.4f}")
    _console().print(table)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="genmodels", description="Fit, sample, score and evaluate generative models.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("models", help="list model families")
    s.add_argument("--modality", default=None)
    s.set_defaults(func=cmd_models)

    s = sub.add_parser("datasets", help="list built-in data sets")
    s.set_defaults(func=cmd_datasets)

    s = sub.add_parser("fit", help="fit a model and save it to a folder")
    s.add_argument("data", help="CSV/Parquet path or built-in data set name")
    s.add_argument("--model", default="flow", help="family name (genmodels models)")
    s.add_argument("--out", required=True, help="folder to save the model (and checkpoints) to")
    s.add_argument("--max-time", type=float, default=None, help="training budget in seconds")
    s.add_argument("--max-epochs", type=int, default=None)
    s.add_argument("--max-steps", type=int, default=None)
    s.add_argument("--validation", type=float, default=0.1, help="share of rows for early stopping")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="hyper-parameter, e.g. --set n_components=5")
    s.add_argument("--kind", action="append", metavar="COLUMN=KIND", help="override a column kind")
    s.add_argument("--codec", action="append", metavar="KEY=VALUE",
                   help="codec option, e.g. --codec size=[32,32] (images) or --codec atoms=none (tables)")
    s.add_argument("--resume", action="store_true", help="continue an interrupted run saved in --out")
    s.add_argument("--modality", default=None, help="tabular, image, text or molecule (inferred when not given)")
    s.add_argument("--size", type=int, default=None,
                   help="built-in sequence sets: train on a seeded subset of this many molecules (moses) or the "
                        "first characters (shakespeare)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_fit)

    s = sub.add_parser("sample", help="draw new examples from a saved model")
    s.add_argument("model_dir")
    s.add_argument("-n", type=int, required=True)
    s.add_argument("-o", "--output", default=None,
                   help="tables: .csv or .parquet; images: a folder (PNG files and grid.png), a .png grid or .npy; "
                        "text and molecules: .txt or .json (printed when left out)")
    s.add_argument("--prompt", default=None, help="text models: continue this text (each sample starts with it)")
    s.add_argument("--set", action="append", metavar="OPTION=VALUE",
                   help="the family's sampling option, e.g. --set guidance=2.0 --set steps=100 (image diffusion), "
                        "--set temperature=0.8 --set top_p=0.9 --set max_length=200 (text), "
                        "--set canonical_only=true (molecules: rejection sampling of canonical strings)")
    s.add_argument("--seed", type=int, default=None)
    s.add_argument("--condition", action="append", metavar="COLUMN=VALUE",
                   help="sample given this column value, or label=CLASS for images (families that can condition)")
    s.add_argument("--force", action="store_true", help=f"allow -n above {MAX_SAMPLE_ROWS:,}")
    s.set_defaults(func=cmd_sample)

    s = sub.add_parser("score", help="log-likelihood of each row (nats)")
    s.add_argument("model_dir")
    s.add_argument("data")
    s.add_argument("-o", "--output", required=True, help=".csv or .parquet")
    s.set_defaults(func=cmd_score)

    s = sub.add_parser("evaluate", help="metrics of a saved model on held-out data")
    s.add_argument("model_dir")
    s.add_argument("data")
    s.add_argument("--json", action="store_true")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--train", default=None, help="training data: adds distance-to-closest-record metrics (tables); the reference set "
                   "and feature-net data (images; defaults to a built-in set's training split)")
    s.set_defaults(func=cmd_evaluate)

    for module in APP_COMMANDS:
        importlib.import_module(module).add_cli(sub)
    for name in ("fit", "sample", "score", "evaluate"):
        sub.choices[name].add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    sub.choices["fit"].add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from .errors import GenmodelsError
    try:
        args.func(args)
    except GenmodelsError as e:
        print(f"genmodels {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"genmodels {args.command}: interrupted" +
              ("; continue with --resume" if args.command == "fit" else ""), file=sys.stderr)
        return 130
    except OSError as e:   # unwritable output folder, disk full: the user's environment, not a bug
        print(f"genmodels {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
