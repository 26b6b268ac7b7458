"""IPv4 and IPv6 defragmentation with target-based overlap policies."""

from dpi.defrag.config import DEFRAG_POLICIES, DefragConfig

__all__ = ["DEFRAG_POLICIES", "DefragConfig"]
