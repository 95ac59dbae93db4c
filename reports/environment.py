"""A run's ``environment.json``: the machine and software a run measured on.

The one reader of that file, so the HTML report and the history agree on it. Runs
written before the file existed have none: that reads as an empty environment.
"""

from __future__ import annotations

import json
from pathlib import Path

from .load import ResultsError

ENVIRONMENT_FILE = "environment.json"


def read_environment(run_dir: Path | str) -> dict[str, object]:
    """The flat environment object of a run folder; ``{}`` when the folder has none."""
    path = Path(run_dir) / ENVIRONMENT_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultsError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ResultsError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data
