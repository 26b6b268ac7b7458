"""`dpi info` agrees with Wireshark's capinfos, and reports damage with its byte offset."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import datetime

import pytest

from dpi.cli import main
from dpi.info import render, summarize
from tests.conftest import REPO, SHARED_DATA


def _epoch_us(ts: str) -> int:
    dt = datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%f%z")
    return int(dt.timestamp()) * 1_000_000 + dt.microsecond


def _captures():
    if not SHARED_DATA.is_dir():
        return []
    return sorted(p for p in (SHARED_DATA / "pcaps").rglob("*") if p.suffix in (".pcap", ".pcapng"))


def test_sample_summary():
    s = summarize(str(REPO / "pcaps" / "wikipedia.pcap"), progress=False)
    assert (s.format, s.packets, s.captured_bytes, s.interfaces) == ("pcap", 136, 25260, 1)
    assert s.linktypes == {"EN10MB(1)": 136}
    assert s.first_timestamp == "2011-03-18T19:06:07.096535+0000"
    assert s.last_timestamp == "2011-03-18T19:06:13.475401+0000"
    assert s.protocols["tcp"] == 78 and s.protocols["udp"] == 48 and s.protocols["ipv6"] == 5
    assert s.decode_status == {"ok": 126, "not_ip": 10}
    assert s.error is None
    assert "Packets:" in render(s)


@pytest.mark.parametrize("path", _captures(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_matches_capinfos(path):
    if shutil.which("capinfos") is None:
        pytest.skip("capinfos (Wireshark) not installed")
    proc = subprocess.run(
        ["capinfos", "-T", "-r", "-c", "-d", "-a", "-e", "-S", "-M", str(path)],
        capture_output=True,
        text=True,
    )
    fields = proc.stdout.strip().split("\t")
    if proc.returncode != 0 or len(fields) != 5:
        # capinfos refuses damaged files; ours must then report the damage
        s = summarize(str(path), progress=False)
        assert s.error is not None, proc.stderr
        return
    _, packets, data_bytes, first, last = fields
    s = summarize(str(path), progress=False)
    assert s.packets == int(packets)
    assert s.wire_bytes == int(data_bytes)  # capinfos "data size" sums the original lengths
    if first != "n/a":
        assert (
            _epoch_us(s.first_timestamp) == round(float(first) * 1e6)
            or abs(_epoch_us(s.first_timestamp) - float(first) * 1e6) < 2
        )
        assert abs(_epoch_us(s.last_timestamp) - float(last) * 1e6) < 2


def test_damaged_capture_reports_offset_and_exit_status(tmp_path, capsys):
    data = (REPO / "pcaps" / "wikipedia.pcap").read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[:5000])
    s = summarize(str(cut), progress=False)
    assert s.packets > 0 and s.error is not None
    assert str(cut) in s.error and "byte offset" in s.error
    assert main(["info", str(cut), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["packets"] == s.packets and doc["error_offset"] == s.error_offset


def test_not_a_capture(tmp_path, capsys):
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"this is not a capture file at all")
    assert main(["info", str(junk)]) == 1
    err = capsys.readouterr().err
    assert "junk.pcap" in err and "byte offset 0" in err
