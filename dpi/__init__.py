"""dpi: a deep-packet-inspection research testbed.

The pipeline (see ARCHITECTURE.md): capture -> decode -> flow -> stream -> match -> detect -> output.
Each stage is a Numba kernel over a batch of NumPy columns; Python runs once per batch.
"""

from dpi import _jit_cache

__version__ = "0.1.0"

# before any kernel module is imported: see _jit_cache
_jit_cache.configure()
