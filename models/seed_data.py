"""Reference data shipped with the models (read by the migrations)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).parent / "data"


@cache
def load_taxonomy() -> dict[str, Any]:
    with (DATA_DIR / "taxonomy.json").open(encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data
