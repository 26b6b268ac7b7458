"""Capture filters: a tcpdump expression compiled to classic BPF by libpcap (through ctypes),
attached to a socket with SO_ATTACH_FILTER so that the kernel drops unwanted frames before
they take space in the ring.

The program is compiled for a "dead" Ethernet handle, as tcpdump compiles for a pcap file,
so it reads the frame as the kernel hands it to the filter. On Linux that frame has no
802.1Q tag (the receive path moves the tag into metadata), so ``vlan`` expressions do not
match received tagged frames, while ``udp`` and the like match them as if untagged.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import socket
import threading
from typing import NamedTuple

DLT_EN10MB = 1
PCAP_NETMASK_UNKNOWN = 0xFFFFFFFF
DEFAULT_SNAPLEN = 262144  # tcpdump's; the program's accept instructions return it
SO_ATTACH_FILTER = 26
SO_DETACH_FILTER = 27
_LIBPCAP_NAMES = ("libpcap.so.1", "libpcap.so.0.8", "libpcap.so")

# pcap_compile is not reentrant in older libpcap releases
_compile_lock = threading.Lock()
_libpcap: ctypes.CDLL | None = None


class BpfInstruction(NamedTuple):
    """One struct sock_filter / bpf_insn: opcode, jump-if-true, jump-if-false, constant."""

    code: int
    jt: int
    jf: int
    k: int


class _BpfInsn(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint32),
    ]


class _BpfProgram(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.POINTER(_BpfInsn))]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_BpfInsn))]


class LibpcapMissingError(RuntimeError):
    """libpcap (which compiles filter expressions) cannot be loaded."""


def load_libpcap() -> ctypes.CDLL:
    """libpcap through ctypes, with the prototypes declared (loaded once)."""
    global _libpcap
    if _libpcap is not None:
        return _libpcap
    names = [ctypes.util.find_library("pcap"), *_LIBPCAP_NAMES]
    failures = []
    for name in filter(None, names):
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError as exc:
            failures.append(str(exc))
    else:
        raise LibpcapMissingError(
            "BPF filters need libpcap to compile the expression, and it could not be loaded "
            f"(tried {', '.join(_LIBPCAP_NAMES)}); install it (apt-get install libpcap0.8) "
            "or capture without a filter"
        )
    lib.pcap_open_dead.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.pcap_open_dead.restype = ctypes.c_void_p
    lib.pcap_compile.argtypes = [
        ctypes.c_void_p,
        ctypes.POINTER(_BpfProgram),
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_uint32,
    ]
    lib.pcap_compile.restype = ctypes.c_int
    lib.pcap_geterr.argtypes = [ctypes.c_void_p]
    lib.pcap_geterr.restype = ctypes.c_char_p
    lib.pcap_freecode.argtypes = [ctypes.POINTER(_BpfProgram)]
    lib.pcap_freecode.restype = None
    lib.pcap_close.argtypes = [ctypes.c_void_p]
    lib.pcap_close.restype = None
    _libpcap = lib
    return lib


def compile_bpf(
    expression: str, snaplen: int = DEFAULT_SNAPLEN, linktype: int = DLT_EN10MB, optimize: bool = True
) -> list[BpfInstruction]:
    """The classic BPF program for a tcpdump filter expression.

    A bad expression raises ValueError naming it and libpcap's reason."""
    lib = load_libpcap()
    with _compile_lock:
        handle = lib.pcap_open_dead(linktype, snaplen)
        if not handle:
            raise RuntimeError(f"libpcap could not open a dead handle for link type {linktype}")
        try:
            program = _BpfProgram()
            text = expression.encode()
            if lib.pcap_compile(handle, ctypes.byref(program), text, int(optimize), PCAP_NETMASK_UNKNOWN):
                reason = (lib.pcap_geterr(handle) or b"unknown error").decode(errors="replace")
                raise ValueError(f"BPF filter {expression!r} does not compile: {reason}")
            try:
                return [
                    BpfInstruction(ins.code, ins.jt, ins.jf, ins.k)
                    for ins in program.bf_insns[: program.bf_len]
                ]
            finally:
                lib.pcap_freecode(ctypes.byref(program))
        finally:
            lib.pcap_close(handle)


def attach_bpf(sock: socket.socket, program: list[BpfInstruction]) -> None:
    """Attach a compiled program to ``sock`` (SO_ATTACH_FILTER; the kernel copies it)."""
    if not program:
        raise ValueError("an empty BPF program cannot be attached")
    insns = (_BpfInsn * len(program))(*(_BpfInsn(*ins) for ins in program))
    fprog = _SockFprog(len(program), ctypes.cast(insns, ctypes.POINTER(_BpfInsn)))
    # setsockopt copies the struct's bytes; ``insns`` stays alive until it returns
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(fprog))


def detach_bpf(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)
