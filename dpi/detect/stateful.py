"""Per-flow state that decides which verified matches become alerts: flowbits, pass and
noalert, applied in Suricata's order.

Matches arrive sorted by packet, and within a packet by the rules' internal order (action
order pass, drop, reject, alert; then rules that set flowbits before rules that read them;
then priority; then sid: Suricata's detect-engine-sigorder). One sequential Numba pass
walks them: a flowbits condition is checked against the bits as earlier matches left
them, and a matching rule's set/unset/toggle takes effect for the next. A pass rule
removes itself and every later alert of its packet; when it matched the reassembled stream
(or is an IP-only rule) the whole flow is passed, and later packets of the flow raise
nothing. noalert rules act but do not alert.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np
from numba import types
from numba.typed import Dict

ACTION_ORDER = ("pass", "drop", "reject", "rejectsrc", "rejectdst", "rejectboth", "alert")
_ACTION_RANK = {
    "pass": 0,
    "drop": 1,
    "reject": 2,
    "rejectsrc": 2,
    "rejectdst": 2,
    "rejectboth": 2,
    "alert": 3,
}

CMD_ISSET = 0
CMD_ISNOTSET = 1
CMD_SET = 2
CMD_UNSET = 3
CMD_TOGGLE = 4
_COMMANDS = {
    "isset": CMD_ISSET,
    "isnotset": CMD_ISNOTSET,
    "set": CMD_SET,
    "unset": CMD_UNSET,
    "toggle": CMD_TOGGLE,
}

# Suricata's flowbits ordering classes: rules that only set come first, then set-and-read,
# then read-only, then rules without flowbits
_FLOWBITS_SET, _FLOWBITS_SET_READ, _FLOWBITS_READ, _FLOWBITS_NONE = 0, 1, 2, 3


def flowbits_class(rule) -> int:
    reads = any(fb.reads for fb in rule.flowbits)
    writes = any(not fb.reads for fb in rule.flowbits)
    if writes and not reads:
        return _FLOWBITS_SET
    if writes and reads:
        return _FLOWBITS_SET_READ
    if reads:
        return _FLOWBITS_READ
    return _FLOWBITS_NONE


def rule_order(rules) -> np.ndarray:
    """Each rule's rank in Suricata's internal order (0 first)."""
    keys = [(_ACTION_RANK[r.action], flowbits_class(r), r.priority, r.sid) for r in rules]
    order = sorted(range(len(rules)), key=keys.__getitem__)
    rank = np.empty(len(rules), np.int64)
    rank[np.asarray(order, np.int64)] = np.arange(len(rules), dtype=np.int64)
    return rank


def is_ip_only(rule) -> bool:
    """Rules Suricata treats as IP-only (detect-engine-iponly.c): addresses and protocol
    only, any ports, no payload, header or flow keywords (flowbits and thresholds allowed).
    They are checked on the first packet of each flow direction."""
    return (
        not rule.payload
        and not rule.header_checks
        and rule.dsize is None
        and not rule.flow.is_set
        and not rule.flow.only_stream
        and not rule.flow.no_stream
        and rule.src_ports.is_any
        and rule.dst_ports.is_any
    )


@dataclass
class FlowState:
    """The compiled flowbits of every rule (CSR) and each rule's action flags."""

    names: dict[str, int]
    fb_start: np.ndarray  # (n_rules + 1,) into the command rows
    fb_cmd: np.ndarray
    fb_any: np.ndarray
    fb_name_start: np.ndarray  # (n_cmds + 1,) into fb_bit
    fb_bit: np.ndarray
    is_pass: np.ndarray  # uint8 per rule
    noalert: np.ndarray
    flow_scope: np.ndarray  # pass applies to the flow even for a packet match (IP-only rule)
    order: np.ndarray  # int64 rank per rule

    @property
    def needed(self) -> bool:
        return bool(len(self.fb_cmd) or self.is_pass.any() or self.noalert.any())


def compile_flow_state(rules) -> FlowState:
    names: dict[str, int] = {}
    fb_start = [0]
    cmd, any_of, name_start, bits = [], [], [0], []
    for rule in rules:
        for fb in rule.flowbits:
            cmd.append(_COMMANDS[fb.command])
            any_of.append(1 if fb.any_of else 0)
            for name in fb.names:
                bits.append(names.setdefault(name, len(names)))
            name_start.append(len(bits))
        fb_start.append(len(cmd))
    return FlowState(
        names=names,
        fb_start=np.asarray(fb_start, np.int64),
        fb_cmd=np.asarray(cmd, np.int64),
        fb_any=np.asarray(any_of, np.uint8),
        fb_name_start=np.asarray(name_start, np.int64),
        fb_bit=np.asarray(bits, np.int64),
        is_pass=np.asarray([r.action == "pass" for r in rules], np.uint8),
        noalert=np.asarray([r.noalert for r in rules], np.uint8),
        flow_scope=np.asarray([is_ip_only(r) for r in rules], np.uint8),
        order=rule_order(rules),
    )


def new_bit_table():
    return Dict.empty(key_type=types.int64, value_type=types.int64)


@nb.njit(cache=True)
def apply_flow_state(
    rule,
    number,
    flow,
    from_stream,
    fb_start,
    fb_cmd,
    fb_any,
    fb_name_start,
    fb_bit,
    is_pass,
    noalert,
    flow_scope,
    n_names,
    bits,
    per_flow,
    passed,
    keep,
    counters,
):
    """``keep[i]``: does match i (sorted by packet, then rule order) become an alert?
    ``bits``: set flowbits keyed flow * n_names + bit; ``per_flow``: how many each flow
    has; ``passed``: flow -> the packet number whose pass rule passed it. counters:
    [flowbit conditions failed, alerts removed by pass, noalert matches, passed-flow matches]."""
    cur = -1
    packet_passed = False
    for i in range(rule.shape[0]):
        if number[i] != cur:
            cur = number[i]
            packet_passed = False
        keep[i] = False
        fl = flow[i]
        if fl in passed and passed[fl] < number[i]:
            counters[3] += 1
            continue
        r = rule[i]
        ok = True
        for c in range(fb_start[r], fb_start[r + 1]):
            cmd = fb_cmd[c]
            if cmd != 0 and cmd != 1:
                continue
            n_set = 0
            n = fb_name_start[c + 1] - fb_name_start[c]
            for q in range(fb_name_start[c], fb_name_start[c + 1]):
                if fl * n_names + fb_bit[q] in bits:
                    n_set += 1
            if cmd == 0:  # isset: any (|) or all
                ok = n_set > 0 if fb_any[c] else n_set == n
            else:  # isnotset: any not set (|) or none set
                ok = n_set < n if fb_any[c] else n_set == 0
            if not ok:
                break
        if not ok:
            counters[0] += 1
            continue
        for c in range(fb_start[r], fb_start[r + 1]):
            cmd = fb_cmd[c]
            if cmd == 0 or cmd == 1:
                continue
            for q in range(fb_name_start[c], fb_name_start[c + 1]):
                key = fl * n_names + fb_bit[q]
                present = key in bits
                if cmd == 2 or (cmd == 4 and not present):
                    if not present:
                        bits[key] = 1
                        per_flow[fl] = per_flow.get(fl, 0) + 1
                elif present:
                    bits.pop(key)
                    per_flow[fl] = per_flow[fl] - 1
        if packet_passed:
            counters[1] += 1
            continue
        if is_pass[r]:
            packet_passed = True
            if from_stream[i] or flow_scope[r]:
                if fl not in passed:
                    passed[fl] = number[i]
            continue
        if noalert[r]:
            counters[2] += 1
            continue
        keep[i] = True


@nb.njit(cache=True)
def forget_flow_state(slots, n_names, bits, per_flow, passed):
    """Flows that ended: their bits and pass state go, so a new flow in the slot starts clean."""
    for s in slots:
        if s in per_flow:
            if per_flow[s] > 0:
                for b in range(n_names):
                    key = s * n_names + b
                    if key in bits:
                        bits.pop(key)
            per_flow.pop(s)
        if s in passed:
            passed.pop(s)
