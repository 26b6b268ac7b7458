"""`dpi bench nic`: tcpreplay into a veth pair inside a network namespace, captured by `dpi live`."""

from __future__ import annotations

import io
import json
import os
import shutil
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from dpi.bench.nic import TOP, parse_rates, parse_tcpreplay
from dpi.cli import main

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "pcaps" / "wikipedia.pcap"
SAMPLE_RULES = REPO / "rules" / "dpi-sample.rules"

TCPREPLAY_OUTPUT = """\
Actual: 272 packets (50520 bytes) sent in 0.080835 seconds
Rated: 624976.8 Bps, 4.99 Mbps, 3364.87 pps
Flows: 55 flows, 680.39 fps, 250 unique flow packets, 22 unique non-flow packets
Statistics for network device: va
\tSuccessful packets:        270
\tFailed packets:            2
\tTruncated packets:         0
"""

needs_netns = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("tcpreplay") is None,
    reason="needs root, iproute2 and tcpreplay (the CI script installs them)",
)


def test_rates_and_tcpreplay_output_are_parsed():
    assert parse_rates("1, 2.5,top") == [1.0, 2.5, TOP]
    for bad, reason in (("fast", "not a number"), ("0", "above 0"), ("", "no rates")):
        with pytest.raises(ValueError, match=reason):
            parse_rates(bad)
    sent = parse_tcpreplay(TCPREPLAY_OUTPUT)
    assert sent == {
        "sent_pkts": 270,
        "failed_pkts": 2,
        "sent_bytes": 50520,
        "seconds": 0.080835,
        "mbps": 4.99,
    }


def test_bad_arguments_are_reported(tmp_path, capsys):
    assert main(["bench", "nic", "--replay", str(SAMPLE), "--rates", "slow"]) == 2
    assert "--rates: rate 'slow' is not a number" in capsys.readouterr().err
    assert main(["bench", "nic", "--replay", str(tmp_path / "none.pcap")]) == 2
    assert "none.pcap: no such file" in capsys.readouterr().err


@needs_netns
def test_low_rates_lose_nothing_and_alert_as_a_scan_does(tmp_path):
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(
            ["bench", "nic", "--replay", str(SAMPLE), "--rates", "2,5", "--loops", "1", "--idle", "1.5",
             "--rules", str(SAMPLE_RULES), "--json"]
        )  # fmt: skip
    assert code == 0
    result = json.loads(out.getvalue())
    assert [r["rate_mbps"] for r in result["rates"]] == [2, 5]
    with open(tmp_path / "eve.json", "w") as eve:
        from dpi.pipeline import scan

        reference = scan([str(SAMPLE)], [str(SAMPLE_RULES)], eve)
    for row in result["rates"]:
        assert row["offered_pkts"] == reference.packets == 136
        assert row["received_pkts"] == row["offered_pkts"] and row["dropped_pkts"] == 0
        assert row["kernel_drops"] == 0 and row["kernel_packets"] >= row["offered_pkts"]  # counters were read
        assert row["alerts"] == reference.alerts  # the live pipeline sees what a pcap scan sees
        assert row["sent_mbps"] == pytest.approx(row["rate_mbps"], rel=0.2)
    assert result["max_lossless_mbps"] == pytest.approx(5, rel=0.2)
    assert "namespace" in result["interface"]


@needs_netns
def test_top_speed_row_and_table(capsys):
    assert (
        main(["bench", "nic", "--replay", str(SAMPLE), "--rates", "top", "--loops", "20", "--idle", "1.5"])
        == 0
    )
    table = capsys.readouterr().out
    assert "top" in table and "highest lossless rate" in table and "offered" in table


def test_dpi_live_command_errors_name_the_interface_and_filter(tmp_path, capsys):
    eve = str(tmp_path / "eve.json")
    assert main(["live", "--iface", "nosuch0", "--duration", "0.2", "--eve", eve]) == 1
    assert "dpi live: nosuch0:" in capsys.readouterr().err
    assert main(["live", "--iface", "lo", "--bpf", "tcp port", "--duration", "0.2", "--eve", eve]) == 1
    assert "'tcp port'" in capsys.readouterr().err
    assert main(["live", "--iface", "lo", "--rules", str(tmp_path / "none.rules"), "--eve", eve]) == 2
    assert "none.rules: no such file" in capsys.readouterr().err


@needs_netns
def test_dpi_live_command_with_bpf_and_user(tmp_path):
    """`dpi live` on the capture end of a veth pair, in a process of its own: --bpf keeps only UDP,
    --user drops root after the socket opens, and the stats event carries the kernel counters."""
    import socket
    import subprocess
    import sys
    import time

    from dpi.capture.netns import entered, veth_namespace
    from dpi.live import _udp_frame

    rules = tmp_path / "r.rules"
    rules.write_text('alert udp any any -> any any (msg:"marker"; content:"MARKER"; sid:7;)\n')
    eve = tmp_path / "eve.json"
    as_tcp = bytearray(_udp_frame(b"xx MARKER xx"))
    as_tcp[23] = 6  # the IP protocol says TCP: the filter must keep it out
    with veth_namespace(prefix="dpi-cli", disable_ipv6=True) as pair:
        argv = [sys.executable, "-m", "dpi", "live", "--iface", pair.capture_iface, "--bpf", "udp",
                "--user", "nobody", "--idle-timeout", "1", "--rules", str(rules),
                "--eve", str(eve)]  # fmt: skip
        proc = subprocess.Popen(
            ["ip", "netns", "exec", pair.name, *argv], cwd=REPO, stderr=subprocess.PIPE, text=True
        )
        for line in proc.stderr:
            if "capturing on" in line:
                break
        # ready is said after the drop: the capturing process (ip netns exec execs it) is nobody now
        status = Path(f"/proc/{proc.pid}/status").read_text()
        assert [line.split()[1:] for line in status.splitlines() if line.startswith("Uid:")] == [
            ["65534"] * 4
        ]
        with entered(pair.name):
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        with sock:
            sock.bind((pair.send_iface, 0))
            for _ in range(3):
                sock.send(_udp_frame(b"xx MARKER xx"))
                sock.send(bytes(as_tcp))
                time.sleep(0.01)
        rest = proc.stderr.read()
        assert proc.wait(timeout=60) == 0, rest
    events = [json.loads(line) for line in eve.read_text().splitlines()]
    alerts = [e for e in events if e["event_type"] == "alert"]
    capture = events[-1]["stats"]["capture"]
    assert len(alerts) == 3 and {a["alert"]["signature_id"] for a in alerts} == {7}
    assert capture["packets"] == 3 and capture["kernel_packets"] == 3 and capture["kernel_drops"] == 0
    assert capture["interface"] == pair.capture_iface
