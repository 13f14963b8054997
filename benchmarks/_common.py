"""Helpers shared by the benchmark scripts (run as ``python benchmarks/NAME.py``, so this folder is on
sys.path): the machine's load (timings on a shared machine depend on it), a progress log, and
``--report-only`` (a report written again from the saved results)."""
from __future__ import annotations

import datetime as _dt
import json
import os
import subprocess
from pathlib import Path


def uptime() -> str:
    """The machine's load, as ``uptime`` prints it (shared machine: timings depend on it)."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=10, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "load averages " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def file_logger(path: Path):
    """A ``log(msg)`` that prints ``[HH:MM:SS] msg`` and appends it to ``path`` (truncated first)."""
    f = Path(path).open("w")

    def log(msg: str) -> None:
        line = f"[{_dt.datetime.now():%H:%M:%S}] {msg}"
        print(line, flush=True)
        f.write(line + "\n")
        f.flush()
    return log


def report_only(out: Path, render) -> int:
    """``--report-only``: write ``OUT.md`` again from ``OUT.json`` with ``render`` and print it."""
    md = out.with_suffix(".md")
    md.write_text(render(json.loads(out.with_suffix(".json").read_text())))
    print(md.read_text())
    return 0
