"""Shared helpers for the benchmark runners."""

from __future__ import annotations

import gzip
import json
import resource
import sys
from pathlib import Path
from typing import Any


def load_json(path: str | Path) -> Any:
    with open(path, "rb") as f:
        head = f.read(2)
    opener = gzip.open if head == b"\x1f\x8b" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return json.load(f)


def reset_peak_rss() -> None:
    """Start a new peak-memory measurement (Linux: resets the process's VmHWM), so that
    an instance run after a larger one, or after the command read every file, reports
    its own peak.  Elsewhere the peak stays the process's since it started."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_mb() -> float:
    """Peak resident memory since :func:`reset_peak_rss` (or since the start), in MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # kilobytes on Linux, bytes on macOS
    return round(rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024, 1)


def find_upward(start: str | Path, name: str) -> Path | None:
    """The first file called ``name`` in the folder of ``start`` or one of its parents,
    also looking one level down in each (e.g. ``benchmarks/fjsp/``)."""
    p = Path(start).resolve()
    folder = p if p.is_dir() else p.parent
    for d in (folder, *folder.parents):
        cand = d / name
        if cand.is_file():
            return cand
        for sub in sorted(d.glob(f"*/{name}")):
            return sub
    return None
