"""classification.config: classtype -> (description, default priority).

Format, one per line: ``config classification: shortname,short description,priority``.
The bundled copy is ET Open's (BSD licensed, see dpi/data/ET-Open-BSD-License.txt).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_CLASSIFICATION_PATH = Path(__file__).resolve().parent.parent / "data" / "classification.config"
DEFAULT_PRIORITY = 3

_PREFIX = "config classification:"


@dataclass(frozen=True, slots=True)
class Classtype:
    name: str
    description: str
    priority: int


class ClassificationError(ValueError):
    """A malformed classification.config line (message names file and line)."""


def parse_classification(text: str, filename: str = "<string>") -> dict[str, Classtype]:
    classes: dict[str, Classtype] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not line.lower().startswith(_PREFIX):
            raise ClassificationError(f"{filename}:{number}: expected '{_PREFIX} name,description,priority'")
        fields = [f.strip() for f in line[len(_PREFIX) :].split(",")]
        if len(fields) != 3 or not fields[0] or not fields[2].isdigit():
            raise ClassificationError(f"{filename}:{number}: expected 'name,description,priority'")
        name, description, priority = fields
        classes[name.lower()] = Classtype(name, description, int(priority))
    return classes


def load_classification(path: str | Path | None = None) -> dict[str, Classtype]:
    """Classtypes by lower-case name, from path or the bundled classification.config."""
    path = Path(path) if path is not None else DEFAULT_CLASSIFICATION_PATH
    return parse_classification(path.read_text(encoding="utf-8", errors="replace"), str(path))
