"""A malformed capture never crashes `dpi scan`, with Numba's bounds checking on.

The whole pipeline (reader, decoder, flows, reassembly, matcher, detection) runs over
seeded random mutations of the bundled sample in a subprocess with NUMBA_BOUNDSCHECK=1,
so an out-of-bounds access in any kernel is an IndexError rather than a silent read."""

from __future__ import annotations

import textwrap

import pytest

from tests.conftest import REPO, run_bounds_checked

SCRIPT = textwrap.dedent(
    """
    import io, json, random, sys
    import numpy as np
    from dpi.pipeline import scan

    # the flag must really be on, or this test proves nothing
    import numba
    @numba.njit(boundscheck=None)
    def probe(a):
        return a[5]
    try:
        probe(np.zeros(1))
        sys.exit("bounds checking is not active")
    except IndexError:
        pass

    sample = open(sys.argv[1], "rb").read()
    rules = sys.argv[2]
    tmp = sys.argv[3]
    rng = random.Random(20261127)
    runs = errors = alerts = 0
    for i in range(int(sys.argv[4])):
        data = bytearray(sample)
        kind = i % 4
        if kind == 0:  # scattered byte flips anywhere, headers included
            for _ in range(rng.randint(1, 40)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind == 1:  # truncate anywhere
            data = data[: rng.randrange(len(data))]
        elif kind == 2:  # hit the length fields of IP/TCP headers hard (bytes 14..60 of frames)
            for _ in range(rng.randint(1, 20)):
                pos = rng.randrange(24, len(data))
                data[pos] = rng.choice([0, 1, 0x45, 0x4F, 0x60, 0x7F, 0x80, 0xFF])
        else:  # splice a chunk of the file over another place
            a, b = sorted(rng.sample(range(24, len(data)), 2))
            seg = data[a:b][:200]
            at = rng.randrange(24, len(data))
            data[at:at + len(seg)] = seg
        path = f"{tmp}/m{i}.pcap"
        open(path, "wb").write(bytes(data))
        out = io.StringIO()
        result = scan([path], [rules], out)
        events = [json.loads(line) for line in out.getvalue().splitlines()]
        assert events[-1]["event_type"] == "stats"
        stats = events[-1]["stats"]
        # every packet read is accounted for by a decode status
        assert sum(stats["decoder"]["status"].values()) == stats["capture"]["packets"]
        runs += 1
        errors += bool(result.capture_errors)
        alerts += result.alerts
    print(json.dumps({"runs": runs, "with_capture_errors": errors, "alerts": alerts}))
    """
)


@pytest.mark.slow
def test_mutated_captures_never_crash_the_pipeline(tmp_path):
    script = tmp_path / "mutate.py"
    script.write_text(SCRIPT)
    proc = run_bounds_checked(
        tmp_path,
        [
            str(script),
            str(REPO / "pcaps" / "wikipedia.pcap"),
            str(REPO / "rules" / "dpi-sample.rules"),
            str(tmp_path),
            "120",
        ],
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert '"runs": 120' in proc.stdout
