"""``dpi gen``: a labelled capture of a realistic protocol mix, with a rule set's content planted in
chosen flows and evasion transforms applied to them.

The flow and message tables are built in Python (a few small writes per flow); segments, frames,
fragments and the pcap bytes are NumPy columns and Numba kernels, so no Python runs per packet.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dpi.defrag.config import DEFRAG_POLICIES
from dpi.gen.evasion import EvasionSettings, FrameRows, applicable, fragment_frames, reshape_segments
from dpi.gen.frames import TCP, TCP_LEN, UDP, UDP_LEN, concat_frames, pcap_bytes, take_frames
from dpi.gen.labels import Labels, write_labels
from dpi.gen.oracle import FIRES, RuleOracle, contents_match
from dpi.gen.plant import Endpoints, construct_payload, endpoints_for, planted_direction, unplantable_reason
from dpi.gen.session import MSS, FlowSpec, Messages, segment_frames, tcp_segments, udp_datagrams
from dpi.gen.traffic import (
    APPS,
    PLANTED,
    TO_CLIENT,
    TO_SERVER,
    UDP_APPS,
    MessageWriter,
    Sizes,
    mix_weights,
    random_server_port,
    text_pool,
    write_app,
)
from dpi.hostos import DEFRAG_POLICY_OF_HOST_OS, STREAM_POLICY_OF_HOST_OS
from dpi.rules.addresses import IPV4_BASE, format_address, split_addresses
from dpi.stream.tcp import STREAM_POLICIES

V6_CLIENT = 0x2001_0DB8_000C << 80
V6_SERVER = 0x2001_0DB8_0005 << 80
START_NS = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z
MSS_CHOICES = (1460, 1440, 1380, 1220, 536)
MSS_WEIGHTS = (0.7, 0.1, 0.1, 0.05, 0.05)


@dataclass
class GenConfig:
    flows: int = 1000
    seed: int = 1
    rules: list[str] = field(default_factory=list)
    variables: dict | None = None
    planted: int | None = None  # flows that carry a rule's content; default a tenth (at least one)
    sids: list[int] | None = None  # plant only these rules
    evasions: tuple[str, ...] = ()
    evasion_share: float = 1.0  # of the planted flows, the share the evasions are applied to
    target_policy: str = "bsd"  # host-os-policy name of the hosts the content is sent to
    tls_share: float | None = None
    mix: dict | None = None
    ipv6_share: float = 0.1
    vlan_share: float = 0.05
    duration_s: float = 10.0
    sizes: Sizes = field(default_factory=Sizes)
    mss: int | None = None  # every flow's; default a mix of common values
    seg_size: int = 8
    window: int = 32
    frag_size: int = 8
    start_ns: int = START_NS


@dataclass
class Generated:
    pcap: np.ndarray
    labels: Labels
    packets: int
    flows: int
    seconds: float


def _plantable(cfg: GenConfig):
    from dpi.rules.parser import load_rules

    if not cfg.rules:
        return [], Counter(), [], []
    ruleset = load_rules(cfg.rules, cfg.variables)
    why: Counter = Counter()
    ok = []
    wanted = set(cfg.sids) if cfg.sids else None
    for rule in ruleset:
        if wanted is not None and rule.sid not in wanted:
            continue
        reason = unplantable_reason(rule)
        if reason is None:
            ok.append(rule)
        else:
            why[reason] += 1
    if wanted is not None:
        missing = wanted - {rule.sid for rule in ruleset}
        if missing:
            raise ValueError(f"sid(s) not loaded from the rule files: {', '.join(map(str, sorted(missing)))}")
    ok.sort(key=lambda rule: (rule.gid, rule.sid))
    return ok, why, ruleset.skipped, list(ruleset)


class _RulePicker:
    """Plantable rules in a seeded shuffled cycle, so a capture plants as many distinct ones as it can."""

    def __init__(self, rules, r: random.Random):
        self.rules = list(rules)
        r.shuffle(self.rules)
        self.next = 0
        self.failed: Counter = Counter()
        self.impossible: set[int] = set()  # IP versions no rule's header accepts

    def plant(self, index: int, ip_version: int, r: random.Random):
        if ip_version in self.impossible:
            raise ValueError(f"no rule of the set can be planted in an IPv{ip_version} flow")
        for _ in range(len(self.rules)):
            rule = self.rules[self.next % len(self.rules)]
            self.next += 1
            payload = construct_payload(rule, r)
            if payload is None or not contents_match(rule.contents, payload):
                self.failed["contents cannot be placed"] += 1
                continue
            ends = endpoints_for(rule, planted_direction(rule), ip_version, index, r)
            if ends is None:
                self.failed[f"no IPv{ip_version} endpoints in the rule's header"] += 1
                continue
            return rule, payload, ends
        self.impossible.add(ip_version)
        raise ValueError(f"no rule of the set can be planted in an IPv{ip_version} flow")


def generate(cfg: GenConfig) -> Generated:
    started = time.perf_counter()
    if cfg.flows < 1:
        raise ValueError("--flows is at least 1")
    for name, share in (("--evasion-share", cfg.evasion_share), ("--ipv6-share", cfg.ipv6_share),
                        ("--vlan-share", cfg.vlan_share)):  # fmt: skip
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"{name} is a fraction in [0, 1], got {share}")
    settings = EvasionSettings(
        chain=tuple(cfg.evasions),
        seg_size=cfg.seg_size,
        window=cfg.window,
        frag_size=cfg.frag_size,
        stream_policy=STREAM_POLICY_OF_HOST_OS[cfg.target_policy],
        defrag_policy=DEFRAG_POLICY_OF_HOST_OS[cfg.target_policy],
    )
    rng = np.random.default_rng(cfg.seed)
    r = random.Random(cfg.seed)
    n = cfg.flows
    plantable, unplantable, skipped, all_rules = _plantable(cfg)
    n_planted = (max(1, n // 10) if cfg.planted is None else cfg.planted) if plantable else 0
    if cfg.rules and not plantable:
        raise ValueError(
            "no rule of the rule files can be planted (contents-only alert rules over tcp or udp)"
        )
    if n_planted > n:
        raise ValueError(f"{n_planted} planted flows do not fit in {n} flows")

    # per flow: protocol, family, VLAN, timing
    app = rng.choice(PLANTED, size=n, p=mix_weights(cfg.mix, cfg.tls_share))
    planted = np.zeros(n, np.bool_)
    planted[rng.choice(n, n_planted, replace=False)] = True
    app[planted] = PLANTED
    evaded = np.zeros(n, np.bool_)
    if settings.chain and n_planted:
        chosen = np.nonzero(planted)[0]
        evaded[rng.choice(chosen, int(round(cfg.evasion_share * len(chosen))), replace=False)] = True
    version = np.where(rng.random(n) < cfg.ipv6_share, 6, 4)
    if "ip6-frag" in settings.chain:
        version[evaded] = 6
    vlan = np.where(rng.random(n) < cfg.vlan_share, rng.choice([10, 20, 30], n), -1)
    start = cfg.start_ns + np.sort(rng.integers(0, max(1, int(cfg.duration_s * 1e9)), n))
    gap = rng.integers(20_000, 400_000, n)
    mss = (np.full(n, cfg.mss) if cfg.mss else rng.choice(MSS_CHOICES, n, p=MSS_WEIGHTS)).astype(np.int64)
    window = np.full(n, 65535, np.int64)
    if (
        "tcp-seg" in settings.chain or "tcp-overlap" in settings.chain
    ):  # overlaps matter where content spans segments
        mss[evaded] = np.minimum(mss[evaded], settings.seg_size)
    if "tcp-window" in settings.chain:
        mss[evaded] = np.minimum(mss[evaded], settings.window)
        window[evaded] = settings.window

    # addresses: clients in 10.0.0.0/8 (HOME_NET) or 2001:db8:c::/48; servers in TEST-NET-2/3
    # or 2001:db8:5::/48
    idx = np.arange(n, dtype=object)
    client = [
        IPV4_BASE | (10 << 24) + 1 + i if v == 4 else V6_CLIENT + 1 + i
        for i, v in zip(idx, version, strict=True)
    ]
    server = [
        IPV4_BASE | ((198 << 24 | 51 << 16 | 100 << 8) if i % 2 else (203 << 24 | 113 << 8)) + 1 + i % 254
        if v == 4
        else V6_SERVER + 1 + i % 4096
        for i, v in zip(idx, version, strict=True)
    ]
    client_port = rng.integers(1024, 65536, n)
    server_port = np.zeros(n, np.int64)
    proto = np.full(n, TCP, np.uint8)

    text = text_pool(rng)
    binary = rng.integers(0, 256, 1 << 20, dtype=np.uint8).tobytes()
    w = MessageWriter(r, text, binary)
    picker = _RulePicker(plantable, r) if plantable else None
    expect: dict[int, dict] = {}
    for f in range(n):
        a = int(app[f])
        if a != PLANTED:
            server_port[f] = random_server_port(a, r)
            proto[f] = UDP if a in UDP_APPS else TCP
            write_app(w, a, f, r, cfg.sizes)
            continue
        try:
            rule, payload, ends = picker.plant(f, int(version[f]), r)
        except ValueError as exc:
            if version[f] != 6 or (evaded[f] and "ip6-frag" in settings.chain):
                raise ValueError(
                    f"{exc} (a rule whose addresses allow IPv6 is needed: set HOME_NET with --var to include "
                    "IPv6 networks, or leave ip6-frag out)"
                ) from None
            version[f] = 4  # drawn as IPv6, but no rule's header takes IPv6: plant over IPv4
            rule, payload, ends = picker.plant(f, 4, r)
        _plant(w, f, rule, payload, r)
        client[f], server[f] = ends.client, ends.server
        client_port[f], server_port[f] = ends.client_port, ends.server_port
        proto[f] = TCP if rule.proto == "tcp" else UDP
        expect[f] = {
            "sid": rule.sid,
            "gid": rule.gid,
            "rev": rule.rev,
            "msg": rule.msg,
            "direction": "to_server" if planted_direction(rule) else "to_client",
        }
    messages = w.messages()

    client_hi, client_lo = split_addresses(client)
    server_hi, server_lo = split_addresses(server)
    flows = FlowSpec(
        ip_version=version,
        client_hi=client_hi,
        client_lo=client_lo,
        server_hi=server_hi,
        server_lo=server_lo,
        client_port=client_port,
        server_port=server_port,
        start_ns=start,
        isn_client=rng.integers(0, 2**32, n),
        isn_server=rng.integers(0, 2**32, n),
        vlan=vlan,
        gap_ns=gap,
        mss=mss,
        window=window,
    )
    parts, part_flows, l4 = [], [], []
    for p, header in ((TCP, TCP_LEN), (UDP, UDP_LEN)):
        members = np.nonzero(proto == p)[0]
        if len(members) == 0:
            continue
        sub_flows = _subset_flows(flows, members)
        sub_messages = _subset_messages(messages, members, n)
        if p == TCP:
            seg = tcp_segments(sub_flows, sub_messages)
            seg, data = reshape_segments(
                seg, evaded[members], settings, sub_flows.start_ns, sub_flows.gap_ns, sub_messages.data, r
            )
            sub_messages.data = data
            frames, frame_flow = segment_frames(sub_flows, sub_messages, seg), seg.flow
        else:
            frames, frame_flow = udp_datagrams(sub_flows, sub_messages)
        parts.append(frames)
        part_flows.append(members[frame_flow])
        l4.append(np.full(len(frame_flow), header))
    frame_flow = np.concatenate(part_flows)
    rows = FrameRows(concat_frames(parts), frame_flow, np.concatenate(l4))
    frames = fragment_frames(rows, evaded, settings, gap, r)
    # the flow of each frame after fragmenting: fragments keep their datagram's time order
    order = np.argsort(np.asarray(frames.ts_ns), kind="stable")
    frames = take_frames(frames, order)
    pcap = pcap_bytes(frames)
    packets = int(np.asarray(frames.data_len).shape[0])

    # the reference verdicts of every loaded rule on every flow: planted content and background alike
    oracle = RuleOracle(all_rules) if all_rules else None
    verdicts = oracle.verdicts(flows, proto == TCP, messages, client, server) if oracle else {}
    by_sid = {rule.sid: rule for rule in all_rules}
    unconfirmed = 0

    enc = messages.encrypted
    payload_bytes = np.bincount(messages.flow, weights=messages.length, minlength=n).astype(np.int64)
    plain_bytes = np.bincount(messages.flow, weights=np.where(enc, 0, messages.length), minlength=n).astype(
        np.int64
    )
    flow_records = []
    for f in range(n):
        tcp = proto[f] == TCP
        applied = applicable(settings.chain, tcp) if evaded[f] else ()
        record = {
            "flow": f,
            "proto": "TCP" if tcp else "UDP",
            "src_ip": format_address(client[f]),
            "src_port": int(client_port[f]),
            "dest_ip": format_address(server[f]),
            "dest_port": int(server_port[f]),
            "ip_version": int(version[f]),
            "vlan": None if vlan[f] < 0 else int(vlan[f]),
            "app": APPS[int(app[f])],
            "payload_bytes": int(payload_bytes[f]),
            "plaintext_bytes": int(plain_bytes[f]),
            "evasions": list(applied),
            "expect": [],
        }
        found = verdicts.get(f, {})
        expectations = []
        if f in expect:
            if found.get(expect[f]["sid"]) == FIRES:
                expectations.append({**expect[f], "origin": "planted"})
            else:
                unconfirmed += 1
        for sid, verdict in sorted(found.items()):
            if verdict == FIRES and not (f in expect and sid == expect[f]["sid"]):
                rule = by_sid[sid]
                expectations.append(
                    {"sid": sid, "gid": rule.gid, "rev": rule.rev, "msg": rule.msg, "origin": "background"}
                )
        if expectations:
            record["expect"] = [
                {**e, **_visibility(oracle, by_sid[e["sid"]], f, applied, settings, tcp)}
                for e in expectations
            ]
        record["undecided"] = sorted(sid for sid, verdict in found.items() if verdict != FIRES)
        flow_records.append(record)
    capture = {
        "seed": cfg.seed,
        "flows": n,
        "packets": packets,
        "rules": [str(p) for p in cfg.rules],
        "planted_flows": int(n_planted),
        "plantable_rules": len(plantable),
        "unplantable_rules": dict(unplantable),
        "rules_not_loaded": len(skipped),
        "planting_retries": dict(picker.failed) if picker else {},
        "planted_not_confirmed": unconfirmed,
        "evasions": list(settings.chain),
        "evasion_share": cfg.evasion_share,
        "target_policy": {
            "host_os": cfg.target_policy,
            "stream": settings.stream_policy,
            "defrag": settings.defrag_policy,
        },
        "tls_share": cfg.tls_share,
        "ipv6_share": cfg.ipv6_share,
        "vlan_share": cfg.vlan_share,
        "duration_s": cfg.duration_s,
        "start_ns": cfg.start_ns,
    }
    return Generated(pcap, Labels(capture, flow_records), packets, n, time.perf_counter() - started)


_EVERY_POLICY_SEES = {
    "seen_by": {"stream": list(STREAM_POLICIES), "defrag": list(DEFRAG_POLICIES)},
    "keeps_real": {"stream": list(STREAM_POLICIES), "defrag": list(DEFRAG_POLICIES)},
    "visible_with_decoys": {"stream_decoy": True, "defrag_decoy": True, "both_decoy": True},
}


def _visibility(oracle, rule, f: int, applied, settings: EvasionSettings, tcp: bool) -> dict:
    """Which overlap policies keep the flow's real bytes, and whether the rule still fires for an
    engine that keeps the decoys instead (a short content may sit whole in one real packet, or in
    the part of a datagram no decoy covers)."""
    stream_overlap, ip_overlap = "tcp-overlap" in applied, "ip-frag-overlap" in applied
    if not (stream_overlap or ip_overlap):
        return _EVERY_POLICY_SEES
    keeps = {"stream": settings.stream_seen_by(applied), "defrag": settings.defrag_seen_by(applied)}
    header = TCP_LEN if tcp else UDP_LEN
    mask_from = -(-header // settings.frag_size) * settings.frag_size - header
    visible = {
        "stream_decoy": oracle.fires_in_view(rule, f, False, None) if stream_overlap else True,
        "defrag_decoy": oracle.fires_in_view(rule, f, True, mask_from) if ip_overlap else True,
        "both_decoy": oracle.fires_in_view(rule, f, not stream_overlap, mask_from if ip_overlap else None),
    }
    seen = {
        "stream": list(STREAM_POLICIES) if visible["stream_decoy"] else keeps["stream"],
        "defrag": list(DEFRAG_POLICIES) if visible["defrag_decoy"] else keeps["defrag"],
    }
    return {"seen_by": seen, "keeps_real": keeps, "visible_with_decoys": visible}


def _plant(w: MessageWriter, f: int, rule, payload: bytes, r: random.Random) -> None:
    """The planted flow's conversation: the content opens its direction's stream; the other side
    speaks plain text. A UDP flow exchanges one pair first, so it is established."""
    to_server = planted_direction(rule)
    other = TO_CLIENT if to_server else TO_SERVER
    if rule.proto == "udp":
        w.add_slice(f, TO_SERVER, r.randint(30, 200), binary=False)
        w.add_slice(f, TO_CLIENT, r.randint(30, 200), binary=False)
        w.add(f, TO_SERVER if to_server else TO_CLIENT, payload)
        w.add_slice(f, other, r.randint(30, 200), binary=False)
        return
    if to_server:
        w.add(f, TO_SERVER, payload)
        w.add_slice(f, TO_CLIENT, r.randint(100, 1500), binary=False)
    else:
        w.add_slice(f, TO_SERVER, r.randint(40, 300), binary=False)
        w.add(f, TO_CLIENT, payload)


def _subset_flows(flows: FlowSpec, members: np.ndarray) -> FlowSpec:
    def take(values):
        return np.broadcast_to(np.asarray(values), (len(flows.start_ns),))[members]

    return FlowSpec(
        ip_version=take(flows.ip_version),
        client_hi=take(flows.client_hi),
        client_lo=take(flows.client_lo),
        server_hi=take(flows.server_hi),
        server_lo=take(flows.server_lo),
        client_port=take(flows.client_port),
        server_port=take(flows.server_port),
        start_ns=take(flows.start_ns),
        isn_client=take(flows.isn_client),
        isn_server=take(flows.isn_server),
        vlan=take(flows.vlan),
        gap_ns=take(flows.gap_ns),
        mss=take(flows.mss),
        window=take(flows.window),
    )


def _subset_messages(messages: Messages, members: np.ndarray, n_flows: int) -> Messages:
    """The messages of the member flows, renumbered 0.. in member order (the data is shared)."""
    new_id = np.full(n_flows, -1, np.int64)
    new_id[members] = np.arange(len(members))
    keep = new_id[messages.flow] >= 0
    return Messages(
        flow=new_id[messages.flow[keep]],
        direction=messages.direction[keep],
        data=messages.data,
        offset=messages.offset[keep],
        length=messages.length[keep],
        encrypted=None if messages.encrypted is None else messages.encrypted[keep],
    )


def write_generated(generated: Generated, out: str | Path, labels: str | Path) -> None:
    Path(out).write_bytes(generated.pcap.tobytes())
    write_labels(generated.labels, labels)


__all__ = ["GenConfig", "Generated", "MSS", "Endpoints", "generate", "write_generated"]
