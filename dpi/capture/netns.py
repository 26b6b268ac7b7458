"""Network namespaces for live-capture tests and the NIC replay harness.

:func:`veth_namespace` makes a namespace that holds both ends of a veth pair, so frames sent
on one end arrive on the other and never reach a real network; :func:`entered` moves the
calling thread into a namespace for a moment (to open a socket there) and back.
Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and iproute2's ``ip``.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

NETNS_DIR = "/var/run/netns"
CLONE_NEWNET = 0x40000000
_counter = itertools.count()
_libc: ctypes.CDLL | None = None


class NetnsError(RuntimeError):
    """A namespace could not be made, entered or used; the message says which and why."""


class VethNamespace(NamedTuple):
    """A namespace and the two ends of its veth pair (frames sent on one arrive on the other)."""

    name: str
    send_iface: str
    capture_iface: str


def netns_path(name: str) -> str:
    return os.path.join(NETNS_DIR, name)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    if shutil.which("ip") is None:
        raise NetnsError("iproute2's `ip` command is not installed (apt-get install iproute2)")
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise NetnsError(f"`ip {' '.join(args)}` failed: {proc.stderr.strip() or proc.returncode}")
    return proc


def namespace_argv(name: str | None, argv: list[str]) -> list[str]:
    """argv run inside namespace ``name`` (``ip netns exec``); argv itself when name is None."""
    return ["ip", "netns", "exec", name, *argv] if name else list(argv)


def run_in_namespace(name: str, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    """``ip netns exec NAME argv...`` (subprocess.run's keywords pass through)."""
    return subprocess.run(namespace_argv(name, argv), **kwargs)


@contextmanager
def veth_namespace(prefix: str = "dpi", disable_ipv6: bool = False) -> Iterator[VethNamespace]:
    """A new namespace named ``PREFIX-PID-N`` holding a veth pair, both ends up (default MTU);
    deleted on exit, after an exception too.

    With ``disable_ipv6`` IPv6 is off on both ends before they come up, so the kernel sends
    no router solicitations or MLD reports of its own on the pair."""
    name = f"{prefix}-{os.getpid()}-{next(_counter)}"
    send, capture = "veth-send", "veth-capture"  # the namespace is private: fixed names do not clash
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "add", "name", send, "type", "veth", "peer", "name", capture)
        if disable_ipv6:
            for iface in (send, capture):
                proc = run_in_namespace(
                    name,
                    ["sysctl", "-qw", f"net.ipv6.conf.{iface}.disable_ipv6=1"],
                    capture_output=True,
                    text=True,
                )
                if proc.returncode != 0:
                    raise NetnsError(f"{name}: could not turn IPv6 off on {iface}: {proc.stderr.strip()}")
        for iface in (send, capture):
            _ip("-n", name, "link", "set", iface, "up")
        yield VethNamespace(name, send, capture)
    finally:
        # deleting the namespace deletes the pair inside it
        _ip("netns", "delete", name, check=False)


def _setns(fd: int, what: str) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NetnsError(f"cannot enter network namespace {what}: {os.strerror(err)}")


@contextmanager
def entered(name: str) -> Iterator[None]:
    """The calling thread runs in network namespace ``name`` (as ``ip netns`` names it) inside
    the block, and in its own namespace again after it. Sockets opened inside stay in ``name``."""
    path = netns_path(name)
    try:
        target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NetnsError(f"network namespace {name!r} not found ({path} does not exist)") from None
    except PermissionError:
        raise NetnsError(f"network namespace {name!r}: no permission to open {path} (needs root)") from None
    try:
        # the thread's own namespace, to come back to (setns moves only the calling thread)
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except BaseException:
        os.close(target)
        raise
    try:
        _setns(target, repr(name))
        try:
            yield
        finally:
            _setns(home, "of this thread (on the way back)")
    finally:
        os.close(target)
        os.close(home)
