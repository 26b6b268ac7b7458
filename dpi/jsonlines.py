"""Reading JSON Lines files (EVE logs, label files) with errors that name the file and the line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path


def read_json_lines(path: str | Path, error: type[Exception] = ValueError) -> Iterator[tuple[int, object]]:
    """(line number, value) for each non-blank line; a line that is not JSON raises ``error`` with
    ``file:line`` and the parser's reason."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as exc:
                raise error(f"{path}:{number}: not JSON ({exc.msg} at column {exc.colno})") from None
