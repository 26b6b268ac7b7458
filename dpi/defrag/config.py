"""Settings of IP defragmentation, with Suricata's defaults (suricata.yaml ``defrag:``)."""

from __future__ import annotations

from dataclasses import dataclass

# Target-based reassembly policies for overlapping fragments (Novak, 2005), under the
# names Suricata uses.
DEFRAG_POLICIES = ("first", "last", "linux", "bsd", "bsd-right", "windows", "solaris")


@dataclass
class DefragConfig:
    policy: str = "bsd"  # overlap policy when the host-os-policy map names none
    timeout_s: int = 60  # capture seconds a datagram may wait for its missing fragments
    memcap: int = 32 << 20  # bytes of fragment data held at once, all datagrams together
    max_fragments: int = 65535  # fragments held at once
