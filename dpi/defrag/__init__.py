"""IPv4 and IPv6 defragmentation with target-based overlap policies."""

from dpi.defrag.config import DEFRAG_POLICIES, DefragConfig, policy_code
from dpi.defrag.defragmenter import Defragmenter
from dpi.defrag.kernels import COUNTER_NAMES

__all__ = ["COUNTER_NAMES", "DEFRAG_POLICIES", "DefragConfig", "Defragmenter", "policy_code"]
