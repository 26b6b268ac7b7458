"""`dpi streams`: one file per TCP direction with tcpflow's names, and an index of holes."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from dpi.capture import open_capture
from dpi.cli import main
from dpi.decode import decode_batch
from dpi.output.streams import endpoint_name, write_streams
from tests.conftest import SHARED_DATA, tcp_session, write_pcap
from tests.test_stream_follow import tshark_streams

CAPTURES = ["zeek/http-pipelined-requests.pcap", "zeek/smtp.pcap", "dpkt/http.pcap", "zeek/ftp-ipv6.pcap"]


def test_endpoint_names_are_tcpflows():
    assert endpoint_name(0, 0xFFFF_C0A8_0102, 4, 80) == "192.168.001.002.00080"
    assert endpoint_name(0x20010DB8_00000000, 1, 6, 443) == "2001:db8::1.00443"


def test_files_index_and_holes(tmp_path):
    data = bytes(range(256)) * 4
    segs = [data[i : i + 100] for i in range(0, len(data), 100)]
    pkts = tcp_session(segs, order=[i for i in range(len(segs)) if i != 2], replies=[b"reply"])
    pcap = write_pcap(tmp_path / "a.pcap", pkts)
    out = tmp_path / "streams"
    assert main(["streams", str(pcap), "--out", str(out)]) == 0
    index = json.loads((out / "index.json").read_text())
    by_file = {s["file"]: s for s in index["streams"]}
    up = by_file["010.000.000.001.40000-010.000.000.002.00080"]
    assert up["gaps"] == [{"offset": 200, "length": 100}] and up["gap_bytes"] == 100
    assert (out / up["file"]).read_bytes() == data[:200] + data[300:]
    assert up["bytes"] == len(data) - 100 and up["direction"] == "to_server"
    down = by_file["010.000.000.002.00080-010.000.000.001.40000"]
    assert (out / down["file"]).read_bytes() == b"reply" and down["gaps"] == []
    assert index["tcp"]["gaps"] == 1


def test_depth_setting(tmp_path, capsys):
    data = bytes(range(256)) * 4
    pcap = write_pcap(tmp_path / "a.pcap", tcp_session([data[i : i + 100] for i in range(0, len(data), 100)]))
    out = tmp_path / "streams"
    assert main(["streams", str(pcap), "--out", str(out), "--set", "stream.reassembly.depth=150"]) == 0
    assert (out / "010.000.000.001.40000-010.000.000.002.00080").read_bytes() == data[:150]
    assert main(["streams", str(pcap), "--out", str(out), "--set", "stream.bogus=1"]) == 2
    assert "unknown setting 'stream.bogus'" in capsys.readouterr().err


@pytest.mark.parametrize("capture", CAPTURES)
def test_files_match_wireshark_and_tcpflow(tmp_path, capture):
    if shutil.which("tshark") is None:
        pytest.skip("tshark not installed: the independent oracle for this test")
    path = SHARED_DATA / "pcaps" / capture
    if not path.exists():
        pytest.skip(f"{path} not found (needs ../shared/data)")
    writer, errors = write_streams([str(path)], str(tmp_path / "ours"))
    assert not errors
    follow = tshark_streams(path)
    for sf in writer.files.values():
        key = ((sf.src_ip, sf.src_port), (sf.dest_ip, sf.dest_port))
        assert (tmp_path / "ours" / sf.file).read_bytes() == follow[key], sf.file
    if shutil.which("tcpflow") is None:
        return
    # tcpflow writes the Ethernet padding of short frames into its files, and splits a
    # direction whose SYN carries data: compare the directions free of both
    theirs = tmp_path / "tcpflow"
    theirs.mkdir()
    subprocess.run(["tcpflow", "-r", str(path), "-o", str(theirs)], capture_output=True, check=True)
    padded = _padded_directions(path)
    compared = 0
    for sf in writer.files.values():
        if (sf.src_ip, sf.src_port, sf.dest_ip, sf.dest_port) in padded or (theirs / f"{sf.file}c1").exists():
            continue
        assert (tmp_path / "ours" / sf.file).read_bytes() == (theirs / sf.file).read_bytes(), sf.file
        compared += 1
    assert compared > 0


def _padded_directions(path) -> set:
    """(src, sport, dst, dport) of TCP directions with a data-less or data-carrying frame
    longer than its IP datagram (Ethernet padding)."""
    import ipaddress

    out = set()
    for batch in open_capture(str(path)).batches():
        d = decode_batch(batch)
        tail = batch.offset + batch.caplen - (d.payload_offset + d.payload_len)
        sel = np.nonzero((d.proto == 6) & (tail > 0) & (d.ip_version != 0))[0]
        for i in sel.tolist():
            ver = int(d.ip_version[i])

            def ip(hi, lo, ver=ver):
                v = (int(hi) << 64) | int(lo)
                return str(ipaddress.IPv4Address(v & 0xFFFFFFFF) if ver == 4 else ipaddress.IPv6Address(v))

            out.add(
                (ip(d.src_hi[i], d.src_lo[i]), int(d.sport[i]), ip(d.dst_hi[i], d.dst_lo[i]), int(d.dport[i]))
            )
    return out


@pytest.mark.parametrize("batch_size", [1, 3, 1000])
def test_holes_found_across_and_within_batches(tmp_path, batch_size):
    data = bytes(range(256)) * 4
    segs = [data[i : i + 100] for i in range(0, len(data), 100)]
    pkts = tcp_session(segs, order=[i for i in range(len(segs)) if i not in (2, 7)])
    pcap = write_pcap(tmp_path / "a.pcap", pkts)
    writer, _ = write_streams([str(pcap)], str(tmp_path / "out"), batch_size=batch_size)
    up = writer.files["010.000.000.001.40000-010.000.000.002.00080"]
    assert up.gaps == [{"offset": 200, "length": 100}, {"offset": 700, "length": 100}]
    assert (tmp_path / "out" / up.file).read_bytes() == data[:200] + data[300:700] + data[800:]


@pytest.mark.parametrize(("policy", "head"), [("linux", b"LLLL"), ("windows", b"CCCL")])
def test_index_lists_overlaps_and_files_follow_the_policy(tmp_path, policy, head):
    from tests.test_stream_policy import SAME, _session

    path = write_pcap(tmp_path / "a.pcap", _session(SAME, 1000))
    out = tmp_path / "out"
    assert main(["streams", str(path), "--out", str(out), "--set", f"stream.policy={policy}"]) == 0
    index = json.loads((out / "index.json").read_text())
    (entry,) = [s for s in index["streams"] if s["direction"] == "to_server"]
    assert (out / entry["file"]).read_bytes().startswith(head)
    assert [o["offset"] for o in entry["overlaps"]] == [0, 0, 14, 14]
    assert all(o["different_data"] for o in entry["overlaps"])
    assert entry["gaps"] == [{"offset": 4, "length": 10}]
