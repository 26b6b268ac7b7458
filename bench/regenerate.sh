#!/usr/bin/env bash
# Regenerates bench/results: the pytest-benchmark suite (JSON with the machine's details, and its
# tables), `dpi bench` (JSON, table and PNG plots) and, as root with tcpreplay, `dpi bench nic`.
# Run from anywhere; ET Open rules come from ../shared/data when it is there.
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/results
mkdir -p "$out"
rules=../shared/data/rules/et-open.rules
[ -f "$rules" ] || rules=rules/dpi-sample.rules

python3 -m pytest bench -q -p no:warnings --benchmark-json="$out/pytest-benchmark.json" \
    --benchmark-columns=min,mean,rounds | tee "$out/pytest-benchmark.txt"
python3 -m dpi bench --rules "$rules" --out "$out" | tee "$out/dpi-bench.txt"
if [ "$(id -u)" = 0 ] && command -v tcpreplay >/dev/null && python3 -m dpi bench nic --help >/dev/null 2>&1; then
    python3 -m dpi bench nic --replay pcaps/wikipedia.pcap --json > "$out/nic.json"
fi
echo "bench/results regenerated"
