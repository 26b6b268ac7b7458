"""`dpi bench nic`: replay a capture onto an interface with tcpreplay at set rates, capture it with
`dpi live`, and report what was offered, received and dropped, and the highest lossless rate.

For each rate, `dpi live` starts first (a process of its own, as it would run in production) and
says when its ring is bound; tcpreplay then sends the capture (``loops`` times) at that rate, or as
fast as it can for ``top``; `dpi live` stops after ``idle`` seconds without a packet and writes its
stats event, whose packet count and kernel counters (PACKET_STATISTICS) are read back.

Without an interface, both ends are a veth pair inside a network namespace made for the run (root
and iproute2 needed), so the traffic never leaves it; IPv6 is turned off on the pair so that the
kernel's own neighbour discovery adds no frames. With ``--iface`` the replay goes out of that
interface and `dpi live` captures on it (or on ``--capture-iface``, for a cabled loop between two
ports).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from dpi.capture.netns import namespace_argv

TOP = "top"
_ACTUAL = re.compile(r"Actual: (\d+) packets \((\d+) bytes\) sent in ([\d.]+) seconds")
_RATED = re.compile(r"Rated: [\d.]+ Bps, ([\d.]+) Mbps")
_SUCCESS = re.compile(r"Successful packets:\s+(\d+)")
_FAILED = re.compile(r"Failed packets:\s+(\d+)")


class NicBenchError(RuntimeError):
    """What stopped the harness, said so that the user can act on it."""


@dataclass
class NicConfig:
    replay: str
    rates: list = field(default_factory=lambda: [10, 100, TOP])  # Mbps, or "top"
    iface: str | None = None
    capture_iface: str | None = None
    rule_paths: list[str] = field(default_factory=list)
    loops: int = 10
    idle: float = 2.0
    ready_timeout: float = 120.0  # the first `dpi live` may JIT-compile


def parse_rates(text: str) -> list:
    """'10,100,top' -> [10.0, 100.0, 'top']; a clear ValueError otherwise."""
    rates: list = []
    for part in text.split(","):
        part = part.strip().lower()
        if not part:
            continue
        if part in (TOP, "topspeed"):
            rates.append(TOP)
            continue
        try:
            value = float(part)
        except ValueError:
            raise ValueError(f"rate {part!r} is not a number of Mbps or 'top'") from None
        if value <= 0:
            raise ValueError(f"rate {part!r}: must be above 0 Mbps")
        rates.append(value)
    if not rates:
        raise ValueError("no rates given")
    return rates


def parse_tcpreplay(output: str) -> dict:
    """Packets, bytes, seconds and Mbps tcpreplay says it sent."""
    actual, rated = _ACTUAL.search(output), _RATED.search(output)
    if actual is None:
        raise NicBenchError(f"tcpreplay did not report what it sent:\n{output.strip()[-2000:]}")
    success, failed = _SUCCESS.search(output), _FAILED.search(output)
    return {
        "sent_pkts": int(success.group(1)) if success else int(actual.group(1)),
        "failed_pkts": int(failed.group(1)) if failed else 0,
        "sent_bytes": int(actual.group(2)),
        "seconds": float(actual.group(3)),
        "mbps": float(rated.group(1)) if rated else None,
    }


def _need(tool: str, why: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise NicBenchError(f"{tool} not found: {why}")
    return path


def _veth_namespace(stack: ExitStack):
    """(namespace, send interface, capture interface) of a veth pair made for this run; IPv6 off
    on it, so that no router solicitation or MLD report of the kernel's adds to the counts."""
    from dpi.capture.netns import NetnsError, veth_namespace

    if os.geteuid() != 0:
        raise NicBenchError("without --iface the harness makes a network namespace, which needs root")
    try:
        pair = stack.enter_context(veth_namespace(prefix="dpi-nic", disable_ipv6=True))
    except NetnsError as exc:
        raise NicBenchError(str(exc)) from exc
    return pair.name, pair.send_iface, pair.capture_iface


def _start_live(ns, iface, rule_paths, eve: Path, idle: float, ready_timeout: float):
    argv = [
        sys.executable,
        "-m",
        "dpi",
        "live",
        "--iface",
        iface,
        "--eve",
        str(eve),
        "--idle-timeout",
        str(idle),
    ]
    if rule_paths:
        argv += ["--rules", *rule_paths]
    proc = subprocess.Popen(
        namespace_argv(ns, argv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    ready = threading.Event()
    lines: list[str] = []

    def watch():
        for line in proc.stderr:
            lines.append(line)
            if "capturing on" in line:
                ready.set()

    threading.Thread(target=watch, daemon=True).start()
    deadline = time.monotonic() + ready_timeout
    while not ready.wait(0.1):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise NicBenchError(f"dpi live did not start on {iface}:\n{''.join(lines)[-2000:]}")
    return proc, lines


def _last_stats(eve: Path) -> dict:
    stats = None
    with open(eve, encoding="utf-8") as fh:
        for line in fh:
            if '"event_type":"stats"' in line:
                stats = json.loads(line)["stats"]
    if stats is None:
        raise NicBenchError(f"{eve}: dpi live wrote no stats event")
    return stats


def run_rate(config: NicConfig, rate, ns, send_iface, capture_iface, work: Path, tcpreplay: str) -> dict:
    """One replay at ``rate`` (Mbps or TOP) with the tcpreplay at that path, and what `dpi live` saw."""
    eve = work / f"live-{rate}.json"
    proc, lines = _start_live(ns, capture_iface, config.rule_paths, eve, config.idle, config.ready_timeout)
    speed = ["--topspeed"] if rate == TOP else [f"--mbps={rate}"]
    argv = [tcpreplay, f"--intf1={send_iface}", *speed, f"--loop={config.loops}", config.replay]
    sent = subprocess.run(namespace_argv(ns, argv), capture_output=True, text=True)
    if sent.returncode != 0:
        proc.terminate()
        raise NicBenchError(
            f"tcpreplay failed on {send_iface}:\n{(sent.stdout + sent.stderr).strip()[-2000:]}"
        )
    replay = parse_tcpreplay(sent.stdout + sent.stderr)
    try:
        proc.wait(timeout=config.idle + 120)
    except subprocess.TimeoutExpired:
        proc.terminate()
        proc.wait(timeout=30)
    if proc.returncode not in (0, None):
        raise NicBenchError(f"dpi live exited with {proc.returncode}:\n{''.join(lines)[-2000:]}")
    stats = _last_stats(eve)
    capture = stats["capture"]
    received = int(capture["packets"])
    offered = replay["sent_pkts"]
    return {
        "rate_mbps": None if rate == TOP else rate,
        "top_speed": rate == TOP,
        "offered_pkts": offered,
        "received_pkts": received,
        "dropped_pkts": max(0, offered - received),
        "kernel_packets": capture.get("kernel_packets"),
        "kernel_drops": capture.get("kernel_drops"),
        "kernel_freeze_q": capture.get("kernel_freeze_q"),
        "sent_mbps": replay["mbps"],
        "sent_seconds": replay["seconds"],
        "send_failed_pkts": replay["failed_pkts"],
        "alerts": int(stats["detect"]["alert"]),
    }


def run_nic_bench(config: NicConfig) -> dict:
    if not Path(config.replay).is_file():
        raise NicBenchError(f"{config.replay}: no such capture to replay")
    tcpreplay = _need("tcpreplay", "the harness sends with tcpreplay (apt-get install tcpreplay)")
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dpi-nic-")))
        if config.iface:
            ns, send, capture = None, config.iface, config.capture_iface or config.iface
        else:
            ns, send, capture = _veth_namespace(stack)
        rows = [run_rate(config, rate, ns, send, capture, work, tcpreplay) for rate in config.rates]
    lossless = [r for r in rows if r["dropped_pkts"] == 0 and r["offered_pkts"] > 0]
    best = max((r["sent_mbps"] or r["rate_mbps"] or 0.0 for r in lossless), default=None)
    return {
        "replay": str(config.replay),
        "loops": config.loops,
        "interface": config.iface or f"veth pair in namespace {ns}",
        "send_iface": send,
        "capture_iface": capture,
        "rates": rows,
        "max_lossless_mbps": best,
    }


def format_nic_table(result: dict) -> str:
    lines = [
        f"dpi bench nic: {result['replay']} x{result['loops']} from {result['send_iface']} "
        f"to {result['capture_iface']}",
        f"{'asked':>10}{'sent Mbps':>11}{'offered':>10}{'received':>10}{'dropped':>9}{'kernel drops':>14}",
    ]
    for r in result["rates"]:
        asked = "top" if r["top_speed"] else f"{r['rate_mbps']:g}"
        sent = "-" if r["sent_mbps"] is None else f"{r['sent_mbps']:.1f}"
        lines.append(
            f"{asked:>10}{sent:>11}{r['offered_pkts']:>10}{r['received_pkts']:>10}{r['dropped_pkts']:>9}"
            f"{r['kernel_drops'] if r['kernel_drops'] is not None else '-':>14}"
        )
    best = result["max_lossless_mbps"]
    lines.append("highest lossless rate: " + ("none" if best is None else f"{best:.1f} Mbps"))
    return "\n".join(lines)
