"""Decode status codes: one uint8 per packet, saying how far decoding got and why it stopped.

Every code falls in one category:

- ``ok``: every header was present and sane.
- ``info``: the headers decoded fine, but the packet needs care downstream (a fragment, a
  capture cut short by the snap length, an IPv4 total length of 0 from TCP segmentation
  offload). Not an error.
- ``skipped``: the packet is not something this decoder handles (not IP, an unsupported
  link type). Counted, not an error.
- ``error``: a header is truncated or malformed; the name says which layer and how.

A packet gets one code. Decoding goes outside in and stops at the first error; an error
found deeper (a bad TCP header behind an IP length that overruns the frame) replaces the
condition noted on the way. Among the info codes FRAGMENT wins over CAPTURE_TRUNCATED,
which wins over IPV4_TSO_ZERO_LENGTH; ``payload_len < ip_payload_len`` shows a cut
payload whatever the code.

Two judgement calls, as Wireshark makes them:

- An IP length beyond the captured bytes is CAPTURE_TRUNCATED when the frame was longer
  on the wire (the snap length cut it), and *_LENGTH_EXCEEDS_FRAME (an error) when the
  frame was whole, so the length field lies. This needs a true wire length from the
  reader; with wire length = captured length every such packet is the error.
- IPv4 total length 0 is a TSO super-segment captured before the NIC filled the length
  in: the length is taken from the frame (Wireshark and dpkt do so; Suricata instead
  calls the packet invalid).

The names in :data:`STATUS_NAMES` are the counter names for stats (``decoder.<name>``, in
the manner of Suricata's decoder counters). Codes are part of the decode -> flow contract:
add new ones at the end of their block, never renumber.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Status(IntEnum):
    OK = 0

    # info: decoded, not an error
    FRAGMENT = 1  # an IPv4/IPv6 fragment; L4 decoded only for the first fragment
    CAPTURE_TRUNCATED = 2  # headers fine; the IP payload was cut by the snap length
    IPV4_TSO_ZERO_LENGTH = 3  # total length 0 (TSO super-segment): length taken from the frame
    TUNNEL_INVALID = 4  # a tunnel's header or inner IP header is broken: the row is the outer packet

    # skipped: not handled here, not an error
    NOT_IP = 16  # link layer fine, but it carries no IP (ARP, PPPoE, LLDP, 802.3/LLC, other AF)
    UNSUPPORTED_LINKTYPE = 17
    MPLS_UNKNOWN_PAYLOAD = 18  # below the label stack is neither IPv4 nor IPv6 (e.g. a pseudowire)

    # errors: link layer
    FRAME_OUT_OF_BUFFER = 32  # the batch's offset/caplen point outside its buffer
    ETH_TRUNCATED = 33
    VLAN_TRUNCATED = 34
    VLAN_TOO_MANY_TAGS = 35
    MPLS_TRUNCATED = 36
    MPLS_TOO_MANY_LABELS = 37
    SLL_TRUNCATED = 38
    SLL2_TRUNCATED = 39
    LOOPBACK_TRUNCATED = 40
    IP_TRUNCATED = 41  # raw IP link type with an empty frame
    IP_BAD_VERSION = 42  # raw IP link type whose version nibble is neither 4 nor 6
    PPPOE_TRUNCATED = 43  # PPPoE session header or PPP protocol field cut short

    # errors: IPv4
    IPV4_TRUNCATED = 48  # fewer than 20 header bytes
    IPV4_BAD_VERSION = 49
    IPV4_BAD_IHL = 50  # IHL < 5
    IPV4_OPTIONS_TRUNCATED = 51  # IHL * 4 bytes not all present
    IPV4_BAD_TOTAL_LENGTH = 52  # total length < IHL * 4 (and not 0)
    IPV4_LENGTH_EXCEEDS_FRAME = 53  # total length beyond the frame as it was on the wire

    # errors: IPv6
    IPV6_TRUNCATED = 64
    IPV6_BAD_VERSION = 65
    IPV6_EXT_TRUNCATED = 66  # an extension header runs past the payload length or the capture
    IPV6_TOO_MANY_EXT = 67
    IPV6_LENGTH_EXCEEDS_FRAME = 68  # payload length beyond the frame as it was on the wire

    # errors: transport
    TCP_TRUNCATED = 80  # fewer than 20 bytes of TCP header
    TCP_BAD_OFFSET = 81  # data offset < 5, or a header longer than the segment
    TCP_OPTIONS_TRUNCATED = 82  # options not all captured
    UDP_TRUNCATED = 83
    UDP_BAD_LENGTH = 84  # UDP length < 8 or beyond the IP payload
    ICMP_TRUNCATED = 85  # fewer than 8 bytes of ICMP header
    ICMPV6_TRUNCATED = 86


CATEGORIES = ("ok", "info", "skipped", "error")
FIRST_SKIPPED_CODE = 16
FIRST_ERROR_CODE = 32  # codes from here up are errors: kernels compare instead of looking up

STATUS_NAMES: dict[int, str] = {int(s): s.name.lower() for s in Status}


def _category_of(code: int) -> str:
    if code == Status.OK:
        return "ok"
    if code < FIRST_SKIPPED_CODE:
        return "info"
    if code < FIRST_ERROR_CODE:
        return "skipped"
    return "error"


STATUS_CATEGORY: dict[int, str] = {code: _category_of(code) for code in STATUS_NAMES}

# Lookup tables over every uint8 value, so the vectorised helpers need no Python loop.
# A code that is not defined counts as an error: something wrote a status nobody knows.
_IS_ERROR = np.ones(256, dtype=bool)
for _code, _cat in STATUS_CATEGORY.items():
    _IS_ERROR[_code] = _cat == "error"


def is_error(code):
    """True where ``code`` is an error status; works on a scalar or an array of codes."""
    result = _IS_ERROR[np.asarray(code, dtype=np.uint8)]
    return bool(result) if np.ndim(result) == 0 else result


def category(code: int) -> str:
    """'ok', 'info', 'skipped' or 'error'."""
    return STATUS_CATEGORY.get(int(code), "error")


def status_name(code: int) -> str:
    return STATUS_NAMES.get(int(code), f"status_{int(code)}")


def count_by_status(status: np.ndarray) -> dict[str, int]:
    """Packets per status name, every defined name included (zeros too), so that stats
    always carry the same keys; an undefined code shows up as ``status_<n>``."""
    counts = np.bincount(np.asarray(status, dtype=np.uint8), minlength=256)
    result = {name: int(counts[code]) for code, name in STATUS_NAMES.items()}
    for code in np.flatnonzero(counts):
        if int(code) not in STATUS_NAMES:
            result[status_name(code)] = int(counts[code])
    return result


def count_by_category(status: np.ndarray) -> dict[str, int]:
    counts = np.bincount(np.asarray(status, dtype=np.uint8), minlength=256)
    result = dict.fromkeys(CATEGORIES, 0)
    for code in np.flatnonzero(counts):
        result[category(code)] += int(counts[code])
    return result
