"""The Defragmenter: owns the datagram table, the piece pool and the arena; one kernel call
per batch (see :mod:`dpi.defrag.kernels` for the reassembly rules)."""

from __future__ import annotations

import numpy as np

from dpi.capture.batch import PacketBatch
from dpi.decode.columns import DecodedBatch
from dpi.decode.link import LINKTYPE_RAW
from dpi.defrag.config import DefragConfig, policy_code
from dpi.defrag.kernels import (
    COUNTER_NAMES,
    CUR_ARENA_LIVE,
    CUR_FREE_PIECE,
    CUR_FREE_TRACKER,
    CUR_NEXT_DEADLINE,
    CUR_OUT_BYTES,
    CUR_OUT_N,
    CUR_TRACKERS,
    LIM_DEFAULT_POLICY,
    LIM_TIMEOUT_NS,
    N_COUNTERS,
    N_CURSOR,
    N_LIMITS,
    NO_DEADLINE,
    Output,
    Pieces,
    Trackers,
    defrag_batch,
    expire_trackers,
)

NS_PER_S = 1_000_000_000


def _free_list(n: int) -> np.ndarray:
    nxt = np.arange(1, n + 1, dtype=np.int64)
    nxt[-1] = -1
    return nxt


def _int64(column: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(column, dtype=np.int64)


class Defragmenter:
    """IPv4/IPv6 reassembly across batches.

    ``process`` takes the fragments of a batch and returns the datagrams they completed as
    a new PacketBatch of raw-IP frames (LINKTYPE_RAW), ready for ``decode_batch``;
    ``last_rows`` then gives, per datagram, the row of the fragment that completed it.
    """

    def __init__(self, config: DefragConfig | None = None):
        self.config = config or DefragConfig()
        cfg = self.config
        self.default_policy = policy_code(cfg.policy)
        for name in ("timeout_s", "memcap", "max_fragments", "max_trackers"):
            if int(getattr(cfg, name)) < 1:
                raise ValueError(f"defrag {name} must be at least 1, not {getattr(cfg, name)}")
        n = int(cfg.max_trackers)
        self.trackers = Trackers(
            live=np.zeros(n, np.uint8),
            version=np.zeros(n, np.int64),
            src_hi=np.zeros(n, np.uint64),
            src_lo=np.zeros(n, np.uint64),
            dst_hi=np.zeros(n, np.uint64),
            dst_lo=np.zeros(n, np.uint64),
            ident=np.zeros(n, np.int64),
            proto=np.zeros(n, np.int64),
            vlan=np.zeros(n, np.int64),
            hash=np.zeros(n, np.int64),
            last_ts=np.zeros(n, np.int64),
            policy=np.zeros(n, np.int64),
            total_len=np.full(n, -1, np.int64),
            held=np.zeros(n, np.int64),
            head=np.full(n, -1, np.int64),
            tail=np.full(n, -1, np.int64),
            frags=np.zeros(n, np.int64),
            hdr_off=np.zeros(n, np.int64),
            hdr_len=np.zeros(n, np.int64),
            next_free=_free_list(n),
        )
        # the index stays at most half full, so probes are short and always end
        self.index = np.full(1 << max(1, (2 * n - 1).bit_length()), -1, np.int64)
        m = int(cfg.max_fragments)
        self.pieces = Pieces(
            next=_free_list(m),
            start=np.zeros(m, np.int64),
            end=np.zeros(m, np.int64),
            arena_off=np.zeros(m, np.int64),
            owner_start=np.zeros(m, np.int64),
            owner_end=np.zeros(m, np.int64),
            live=np.zeros(m, np.uint8),
        )
        # zero pages until touched: most captures hold few fragments
        self.arena = np.zeros(int(cfg.memcap), np.uint8)
        self.scratch = np.zeros(int(cfg.memcap), np.uint8)
        self.cursor = np.zeros(N_CURSOR, np.int64)
        self.cursor[CUR_FREE_TRACKER] = 0
        self.cursor[CUR_FREE_PIECE] = 0
        self.cursor[CUR_NEXT_DEADLINE] = NO_DEADLINE
        self.limits = np.zeros(N_LIMITS, np.int64)
        self.limits[LIM_TIMEOUT_NS] = int(cfg.timeout_s) * NS_PER_S
        self.limits[LIM_DEFAULT_POLICY] = self.default_policy
        self.counters = np.zeros(N_COUNTERS, np.int64)
        self.last_rows = np.zeros(0, np.int64)

    def process(
        self,
        batch: PacketBatch,
        decoded: DecodedBatch,
        fragments: np.ndarray,
        policy: np.ndarray | None = None,
    ) -> PacketBatch:
        """Reassemble the fragments of ``batch`` selected by ``fragments``; ``policy`` is
        each packet's policy code (index into DEFRAG_POLICIES; a datagram keeps the code
        of its first fragment), None for the configured policy. Datagrams whose latest
        fragment is older than the timeout at the batch's latest timestamp are dropped
        afterwards."""
        n = len(batch)
        fragments = np.ascontiguousarray(fragments, dtype=np.bool_)
        if fragments.shape[0] != n or len(decoded) != n:
            raise ValueError(
                f"batch, decoded and fragments differ in length: {n}, {len(decoded)}, {fragments.shape[0]}"
            )
        if policy is None:
            codes = np.zeros(0, np.uint8)
        else:
            codes = np.ascontiguousarray(policy, dtype=np.uint8)
            if codes.shape[0] != n:
                raise ValueError(f"policy has {codes.shape[0]} rows for {n} packets")
        caplen = _int64(batch.caplen)
        # a datagram is made of bytes held before this batch and of this batch's frames
        bound = int(self.cursor[CUR_ARENA_LIVE]) + int(caplen[fragments].clip(min=0).sum())
        n_frag = int(np.count_nonzero(fragments))
        out = Output(
            data=np.empty(bound, np.uint8),  # every byte up to the end is written
            offset=np.zeros(n_frag, np.int64),
            length=np.zeros(n_frag, np.int64),
            ts_ns=np.zeros(n_frag, np.int64),
            number=np.zeros(n_frag, np.int64),
            row=np.zeros(n_frag, np.int64),
        )
        self.cursor[CUR_OUT_N] = 0
        self.cursor[CUR_OUT_BYTES] = 0
        ts = _int64(batch.ts_ns)
        if n_frag:
            defrag_batch(
                np.ascontiguousarray(batch.buffer, dtype=np.uint8),
                _int64(batch.offset),
                caplen,
                fragments,
                _int64(decoded.l3_offset),
                np.ascontiguousarray(decoded.ip_version, dtype=np.uint8),
                np.ascontiguousarray(decoded.src_hi, dtype=np.uint64),
                np.ascontiguousarray(decoded.src_lo, dtype=np.uint64),
                np.ascontiguousarray(decoded.dst_hi, dtype=np.uint64),
                np.ascontiguousarray(decoded.dst_lo, dtype=np.uint64),
                np.ascontiguousarray(decoded.vlan, dtype=np.uint16),
                np.ascontiguousarray(decoded.vlan_outer, dtype=np.uint16),
                codes,
                ts,
                _int64(batch.number),
                self.index,
                self.trackers,
                self.pieces,
                self.arena,
                self.scratch,
                out,
                self.cursor,
                self.limits,
                self.counters,
            )
        if n:
            self.expire(int(ts.max()))
        k = int(self.cursor[CUR_OUT_N])
        used = int(self.cursor[CUR_OUT_BYTES])
        self.last_rows = out.row[:k].copy()
        length = out.length[:k].copy()
        return PacketBatch(
            buffer=out.data[:used],
            offset=out.offset[:k].copy(),
            caplen=length,
            wirelen=length.copy(),
            ts_ns=out.ts_ns[:k].copy(),
            linktype=np.full(k, LINKTYPE_RAW, np.int64),
            number=out.number[:k].copy(),
        )

    def expire(self, now_ns: int) -> int:
        """Drop (and count) the datagrams still incomplete ``timeout_s`` after their first
        fragment; returns how many."""
        if self.cursor[CUR_TRACKERS] == 0 or now_ns <= self.cursor[CUR_NEXT_DEADLINE]:
            return 0
        return int(self._expire(now_ns, False))

    def flush(self) -> int:
        """End of capture: drop (and count) every incomplete datagram; returns how many."""
        if self.cursor[CUR_TRACKERS] == 0:
            return 0
        return int(self._expire(0, True))

    def _expire(self, now_ns: int, everything: bool) -> int:
        return expire_trackers(
            np.int64(now_ns),
            self.index,
            self.trackers,
            self.pieces,
            self.cursor,
            self.limits,
            self.counters,
            everything,
        )

    @property
    def held_bytes(self) -> int:
        return int(self.cursor[CUR_ARENA_LIVE])

    @property
    def active(self) -> int:
        """Datagrams being reassembled."""
        return int(self.cursor[CUR_TRACKERS])

    def stats(self) -> dict[str, int]:
        """Counters by name (Suricata's defrag stats where it has one), and two gauges:
        ``memuse`` (bytes held) and ``fragments_held`` (fragments of datagrams in progress)."""
        result = {name: int(v) for name, v in zip(COUNTER_NAMES, self.counters, strict=True)}
        result["memuse"] = self.held_bytes
        live = self.trackers.live.astype(bool)
        result["fragments_held"] = int(self.trackers.frags[live].sum())
        result["trackers_active"] = self.active
        return result
