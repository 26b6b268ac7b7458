"""Live capture from an AF_PACKET TPACKET_V3 memory-mapped ring.

The kernel writes frames into a ring of blocks shared with us through ``mmap`` and hands a
block over (TP_STATUS_USER) when it is full or its retire timer fires. Each handed-over
block is copied into the batch's buffer with one NumPy copy and given straight back
(TP_STATUS_KERNEL): the pipeline keeps references to batch buffers for as long as it
likes, and the kernel must not wait for that. The copy is then indexed by the same kind
of Numba kernel that indexes a pcap file (:func:`dpi.capture.ring.index_block`), so the
batches that come out are the pcap readers' :class:`PacketBatch` columns.

What is captured is what tcpdump captures: every frame AF_PACKET sees on the interface,
received and sent (PACKET_OUTGOING) alike — PACKET_IGNORE_OUTGOING is not set, so a host's
own traffic is inspected too, and a frame bridged or replayed out of the interface is seen
on the way out — with 802.1Q tags that the kernel moved into metadata written back into the
frame. The interface is put in promiscuous mode for as long as the socket is open, unless
asked not to. Timestamps are the kernel's software receive times (CLOCK_REALTIME, ns).
"""

from __future__ import annotations

import errno
import mmap
import os
import pwd
import select
import socket
import struct
import time
from collections.abc import Iterator
from contextlib import nullcontext

import numpy as np

from dpi.capture.batch import PacketBatch
from dpi.capture.bpf import DEFAULT_SNAPLEN, attach_bpf, compile_bpf
from dpi.capture.errors import CaptureError
from dpi.capture.netns import NetnsError, entered
from dpi.capture.reader import DEFAULT_BATCH_SIZE, CaptureInfo, CaptureReader, Interface
from dpi.capture.ring import VLAN_TAG_LEN, BlockRing, ring_damage_message
from dpi.decode.link import LINKTYPE_ETHERNET

# linux/if_packet.h and linux/if_ether.h
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
PACKET_RESERVE = 12
PACKET_MR_PROMISC = 1
TPACKET_V3 = 2
ETH_P_ALL = 0x0003
# ARPHRD_* hardware types whose frames start with an Ethernet header
_ETHERNET_HATYPES = {1: "ether", 772: "loopback"}

DEFAULT_BLOCK_SIZE = 1 << 20
DEFAULT_BLOCK_COUNT = 32
DEFAULT_FRAME_SIZE = 2048  # only sizes the kernel's frame count: V3 frames have any length
DEFAULT_RETIRE_MS = 50  # a block with packets is handed over at most about twice this late
POLL_INTERVAL_S = 0.1  # how often a stop request, deadline or idle timeout is checked
MAX_RECORDED_ERRORS = 100


class LiveCaptureError(RuntimeError):
    """A live capture could not start (or went on): the message names the interface, its
    namespace when there is one, and the reason."""

    def __init__(self, iface: str, reason: str, netns: str | None = None):
        self.iface = iface
        self.reason = reason
        self.netns = netns
        where = f"{iface} (network namespace {netns})" if netns else iface
        super().__init__(f"{where}: {reason}")


def drop_privileges(user: str) -> None:
    """Become ``user`` for good: no supplementary groups, then its group, then its uid.

    Sockets and maps opened before keep working; new AF_PACKET sockets are refused."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ValueError(f"cannot drop privileges to user {user!r}: no such user") from None
    try:
        os.setgroups([])
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)
    except PermissionError as exc:
        raise PermissionError(
            f"cannot drop privileges to user {user!r} (uid {entry.pw_uid}): {exc.strerror} "
            "(only root can change its user)"
        ) from None
    if os.getuid() != entry.pw_uid or os.geteuid() != entry.pw_uid:
        raise PermissionError(f"dropping privileges to user {user!r} left uid {os.getuid()}")


def _stop_requested(stop) -> bool:
    if stop is None:
        return False
    if hasattr(stop, "is_set"):
        return bool(stop.is_set())
    return bool(stop())


class LiveCapture(CaptureReader):
    """Batches of frames captured on a network interface through a TPACKET_V3 ring.

    The socket is open and bound once the constructor returns (so privileges can be
    dropped and senders started); ``batches()`` then yields until a limit or a stop
    request. ``bpf`` is a tcpdump filter expression that the kernel applies before the
    ring; ``netns`` names a network namespace (``ip netns``) to open the socket in.
    Damaged ring blocks never stop the capture: each is counted and recorded in
    ``self.errors`` (the packets before the damage are kept).
    """

    name = "af_packet"
    # set before anything can fail, so that close() (and __del__) always find them
    _sock: socket.socket | None = None
    _map: mmap.mmap | None = None
    _blocks: BlockRing | None = None

    def __init__(
        self,
        iface: str,
        *,
        bpf: str | None = None,
        netns: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        block_size: int = DEFAULT_BLOCK_SIZE,
        block_count: int = DEFAULT_BLOCK_COUNT,
        frame_size: int = DEFAULT_FRAME_SIZE,
        retire_ms: int = DEFAULT_RETIRE_MS,
        snaplen: int = DEFAULT_SNAPLEN,
        promisc: bool = True,
    ):
        super().__init__(iface, batch_size)
        page = mmap.PAGESIZE
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        if block_size < page or block_size % page:
            raise ValueError(f"block_size {block_size} must be a positive multiple of the page size {page}")
        if block_count < 1:
            raise ValueError(f"block_count must be at least 1, not {block_count}")
        if frame_size < 128 or frame_size % 16 or block_size % frame_size:
            raise ValueError(f"frame_size {frame_size} must be a multiple of 16 that divides block_size")
        self.iface = iface
        self.netns = netns
        self.bpf = bpf or None
        self.block_size = int(block_size)
        self.block_count = int(block_count)
        self.frame_size = int(frame_size)
        self.retire_ms = int(retire_ms)
        self.snaplen = int(snaplen)
        self.promisc = promisc
        self.errors: list[CaptureError] = []
        self.linktype = LINKTYPE_ETHERNET
        self.info = CaptureInfo(
            path=iface,
            format="af_packet",
            interfaces=[Interface(self.linktype, self.snaplen, tsresol_ns_num=1, name=iface)],
        )
        self.packets = 0  # packets yielded so far (the next one is number packets + 1)
        self.damaged_blocks = 0
        self._kernel = {"kernel_packets": 0, "kernel_drops": 0, "kernel_freeze_q": 0}
        self._open()

    # -- opening -----------------------------------------------------------------------------

    def _fail(self, reason: str) -> LiveCaptureError:
        return LiveCaptureError(self.iface, reason, self.netns)

    def _open(self) -> None:
        try:
            place = entered(self.netns) if self.netns else nullcontext()
            with place:
                self._open_here()
        except NetnsError as exc:
            self.close()
            raise self._fail(str(exc)) from None
        except BaseException:
            self.close()
            raise

    def _open_here(self) -> None:
        try:
            ifindex = socket.if_nametoindex(self.iface)
        except OSError:
            raise self._fail("no such network interface") from None
        try:
            # protocol 0: nothing is queued until bind, so no frame of another interface
            # (or one the filter would refuse) ever enters the ring
            self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except PermissionError as exc:
            raise self._fail(
                f"cannot open an AF_PACKET socket: {exc.strerror} (live capture needs root or CAP_NET_RAW)"
            ) from None
        sock = self._sock
        try:
            sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
            # room before each frame to write a stripped VLAN tag back (libpcap does the same)
            sock.setsockopt(SOL_PACKET, PACKET_RESERVE, VLAN_TAG_LEN)
        except OSError as exc:
            raise self._fail(f"the kernel refuses TPACKET_V3: {exc.strerror}") from None
        frames = self.block_size // self.frame_size * self.block_count
        req = struct.pack(
            "7I", self.block_size, self.block_count, self.frame_size, frames, self.retire_ms, 0, 0
        )
        try:
            sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
            size = self.block_size * self.block_count
            self._map = mmap.mmap(
                sock.fileno(), size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE
            )
        except OSError as exc:
            raise self._fail(
                f"ring of {self.block_count} blocks of {self.block_size} bytes not set up: {exc.strerror}"
            ) from None
        ring = np.frombuffer(self._map, dtype=np.uint8)
        self._blocks = BlockRing(ring, self.block_size, self.block_count)
        if self.bpf is not None:
            # a bad expression raises ValueError naming it and libpcap's reason
            attach_bpf(sock, compile_bpf(self.bpf, snaplen=self.snaplen))
        try:
            sock.bind((self.iface, ETH_P_ALL))
        except OSError as exc:
            raise self._fail(f"cannot bind the capture socket: {exc.strerror}") from None
        hatype = sock.getsockname()[3]
        if hatype not in _ETHERNET_HATYPES:
            raise self._fail(f"hardware type {hatype} is not Ethernet; only Ethernet interfaces are captured")
        if self.promisc:
            mreq = struct.pack("iHH8s", ifindex, PACKET_MR_PROMISC, 0, b"")
            try:
                sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
            except OSError as exc:
                raise self._fail(f"cannot enter promiscuous mode: {exc.strerror}") from None

    def drop_privileges(self, user: str) -> None:
        """Run as ``user`` from now on; the open socket and ring keep working."""
        drop_privileges(user)

    # -- reading -----------------------------------------------------------------------------

    def batches(
        self,
        max_packets: int | None = None,
        duration: float | None = None,
        idle_timeout: float | None = None,
        stop=None,
    ) -> Iterator[PacketBatch]:
        """Batches of captured frames until ``max_packets`` frames (the rest of the last block
        is discarded), ``duration`` seconds, ``idle_timeout`` seconds without a frame, or
        ``stop`` (an Event, or a callable returning True) — whichever comes first. Without a
        limit it runs until stopped. After a time limit or a stop request the blocks the
        kernel still hands over within two retire periods are read, then it ends."""
        if self._sock is None:
            raise self._fail("the capture is closed")
        return self._iterate(max_packets, duration, idle_timeout, stop)

    def _iterate(self, max_packets, duration, idle_timeout, stop) -> Iterator[PacketBatch]:
        poller = select.poll()
        poller.register(self._sock.fileno(), select.POLLIN | select.POLLERR)
        started = last_packet = time.monotonic()
        deadline = None if duration is None else started + duration
        # the block being filled is handed over by its retire timer within two periods: after
        # a limit or a stop request we read for that long more, then end
        drain_s = 2 * self.retire_ms / 1000 + 0.05
        drain_until = None
        wanted = None if max_packets is None else self.packets + int(max_packets)
        while wanted is None or self.packets < wanted:
            now = time.monotonic()
            if drain_until is None and (_stop_requested(stop) or (deadline is not None and now >= deadline)):
                drain_until = now + drain_s
            if drain_until is not None and now >= drain_until:
                return
            blocks = self._blocks.ready(self.batch_size)
            if blocks:
                batch = self._take(blocks, None if wanted is None else wanted - self.packets)
                if len(batch):
                    yield batch
                    # idle time counts from here: frames that wait while a batch is processed
                    # are not idleness
                    last_packet = time.monotonic()
                continue
            if drain_until is None and idle_timeout is not None and now - last_packet >= idle_timeout:
                drain_until = now + drain_s
            wait = POLL_INTERVAL_S
            idle_until = None if idle_timeout is None or drain_until else last_packet + idle_timeout
            for until in (deadline, drain_until, idle_until):
                if until is not None:
                    wait = min(wait, max(0.0, until - now))
            for _fd, events in poller.poll(max(1, int(wait * 1000))):
                if events & select.POLLERR and self._socket_error():
                    return

    def _socket_error(self) -> bool:
        """Record a pending socket error; True when the interface is gone for good."""
        code = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code == 0:
            return False
        reason = f"socket error: {os.strerror(code)}"
        self._record(CaptureError(self.iface, 0, reason, packet=self.packets + 1))
        return code == errno.ENODEV

    def _take(self, blocks: list[int], limit: int | None) -> PacketBatch:
        taken = self._blocks.take(blocks)
        for block, stop, detail, rows in taken.damage:
            self.damaged_blocks += 1
            reason = f"ring block {block}: {ring_damage_message(stop, detail)}"
            where = block * self.block_size
            self._record(CaptureError(self.iface, where, reason, packet=self.packets + rows + 1))
        n = len(taken) if limit is None else min(len(taken), limit)
        first = self.packets + 1
        self.packets += n
        return PacketBatch(
            buffer=taken.buffer,
            offset=taken.offset[:n],
            caplen=taken.caplen[:n],
            wirelen=taken.wirelen[:n],
            ts_ns=taken.ts_ns[:n],
            linktype=np.full(n, self.linktype, dtype=np.int64),
            number=np.arange(first, first + n, dtype=np.int64),
        )

    def _record(self, error: CaptureError) -> None:
        if len(self.errors) < MAX_RECORDED_ERRORS:
            self.errors.append(error)
        if self.error is None:
            self.error = error

    # -- counters and closing ----------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """The kernel's counters since the socket was bound: ``kernel_packets`` (frames that
        passed the filter, dropped ones included), ``kernel_drops`` (no room in the ring),
        ``kernel_freeze_q`` (times the ring was full), and the ring blocks found damaged."""
        if self._sock is not None:
            # reading PACKET_STATISTICS resets the kernel's counters: add them up here
            raw = self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 12)
            packets, drops, freeze = struct.unpack("3I", raw)
            self._kernel["kernel_packets"] += packets
            self._kernel["kernel_drops"] += drops
            self._kernel["kernel_freeze_q"] += freeze
        return {**self._kernel, "ring_damaged_blocks": self.damaged_blocks}

    def fileno(self) -> int:
        if self._sock is None:
            raise self._fail("the capture is closed")
        return self._sock.fileno()

    def close(self) -> None:
        """Read the counters a last time, unmap the ring and close the socket (idempotent)."""
        if self._sock is not None and self._map is not None:
            try:
                self.stats()
            except OSError:
                pass
        self._blocks = None
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:
                pass  # a view still exists somewhere; the map goes when it does
            self._map = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __del__(self):
        self.close()
