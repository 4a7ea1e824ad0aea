"""Logger ``jsonl``: every record appended to a JSON Lines file of your choosing.

The run folder's own ``metrics.jsonl`` is written by the zoo whatever the loggers; this
logger is for a second copy elsewhere (a file a dashboard tails, one file gathering many
runs) in strict JSON, and it is the smallest complete logger: a plugin author's template.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any

import zoo
from zoo_plugins.loggers.records import finite


class JsonlLogger:
    """Appends each record of the run to a JSON Lines file, NaN written as null (strict JSON).

    One JSON object per line, flushed as it is written so that ``tail -f`` sees each
    epoch; the file is appended to (a resumed run, or many runs sharing a file, add to
    it), so it is not written atomically: a crash loses at most the line in flight.

    Args:
        path: the file, relative to the run folder unless absolute (its folder is
            created).
    """

    def __init__(self, *, path: str = "records.jsonl") -> None:
        self.path = path
        self.file: IO[str] | None = None

    def start(self, run: zoo.RunInfo) -> None:
        """Open the file for appending."""
        path = run.dir / Path(self.path).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = path.open("a", encoding="utf-8", buffering=1)  # line-buffered

    def log(self, record: dict[str, Any]) -> None:
        """Append ``record`` as one line."""
        if self.file is None:
            raise RuntimeError("log() before start()")
        self.file.write(json.dumps(finite(record), allow_nan=False, default=_plain) + "\n")
        self.file.flush()

    def end(self, summary: dict[str, Any] | None, status: str) -> None:
        """Close the file."""
        if self.file is not None:
            self.file.close()
            self.file = None


def _plain(value: Any) -> Any:
    """A tensor or numpy value as plain JSON (non-finite numbers as null)."""
    if hasattr(value, "tolist"):
        return finite(value.tolist())
    return str(value)


@zoo.hookimpl
def zoo_register(registry) -> None:
    registry.add("logger", "jsonl", JsonlLogger)
