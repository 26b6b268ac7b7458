"""Where Numba keeps dpi's compiled kernels.

Numba's ``cache=True`` invalidates a cached kernel only when the file of the decorated
function changes, not when a helper it calls from another module does: an edited helper
could leave a stale kernel in the cache. So the cache directory is keyed by a hash of every
source file of the package; any change to dpi's code starts from a fresh cache.
A user-set NUMBA_CACHE_DIR is respected as it is.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def source_digest(package_dir: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(package_dir.rglob("*.py")):
        h.update(str(path.relative_to(package_dir)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def configure() -> None:
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    import numba

    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dpi"
    cache_dir = base / f"numba-{source_digest(Path(__file__).resolve().parent)}"
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError:
        return  # an unwritable home: Numba's own default applies
    numba.config.CACHE_DIR = str(cache_dir)
