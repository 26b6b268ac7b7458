"""Settings of IP defragmentation, with Suricata's defaults (suricata.yaml ``defrag:``)."""

from __future__ import annotations

from dataclasses import dataclass

# Target-based reassembly policies for overlapping fragments (Novak, 2005), under the
# names Suricata uses. A policy code is an index into this tuple.
DEFRAG_POLICIES = ("first", "last", "linux", "bsd", "bsd-right", "windows", "solaris")

POLICY_FIRST = 0
POLICY_LAST = 1
POLICY_LINUX = 2
POLICY_BSD = 3
POLICY_BSD_RIGHT = 4
POLICY_WINDOWS = 5
POLICY_SOLARIS = 6


def policy_code(name: str) -> int:
    """The code of a policy name (ValueError names the choices)."""
    try:
        return DEFRAG_POLICIES.index(name)
    except ValueError:
        raise ValueError(
            f"unknown defrag policy {name!r}; choose one of {', '.join(DEFRAG_POLICIES)}"
        ) from None


@dataclass
class DefragConfig:
    policy: str = "bsd"  # overlap policy when the host-os-policy map names none
    timeout_s: int = 60  # capture seconds a datagram may wait after its latest fragment
    memcap: int = 32 << 20  # bytes of fragment data held at once, all datagrams together
    max_fragments: int = 65535  # fragments held at once
    max_trackers: int = 65535  # datagrams being reassembled at once (Suricata's defrag.trackers)
