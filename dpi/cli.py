"""The `dpi` command line: a thin layer over the library functions."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

from dpi.capture import DEFAULT_BATCH_SIZE, READERS


def _parse_vars(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"dpi: --var expects NAME=VALUE, got {item!r}")
        out[name.lstrip("$")] = value
    return out


def _missing(command: str, paths) -> bool:
    """Say which input does not exist (the caller then exits 2)."""
    for p in paths:
        if not Path(p).exists():
            print(f"dpi {command}: {p}: no such file", file=sys.stderr)
            return True
    return False


def _settings(command: str, args):
    """Settings from --config and --set (the command line wins), or None after saying on
    stderr what is wrong (the caller then exits 2)."""
    from dpi.settings import SettingsError, load_settings

    try:
        return load_settings(args.config, args.set)
    except SettingsError as exc:
        print(f"dpi {command}: {exc}", file=sys.stderr)
        return None


@contextmanager
def _eve_output(path: str):
    """The EVE destination ('-' is stdout), and where the human summary goes (stderr when
    the events take stdout)."""
    if path == "-":
        yield sys.stdout, sys.stderr
        return
    with open(path, "w", encoding="utf-8") as fh:
        yield fh, sys.stdout


def cmd_scan(args) -> int:
    from dpi.pipeline import scan

    settings = _settings("scan", args)
    if settings is None or _missing("scan", list(args.pcap) + list(args.rules)):
        return 2
    # the file's vars: section first, --var over it
    variables = {**settings.variables, **_parse_vars(args.var)}
    with _eve_output(args.eve) as (out, report):
        result = scan(
            args.pcap,
            args.rules,
            out,
            reader=args.reader,
            batch_size=args.batch_size,
            variables=variables,
            engine=args.engine,
            settings=settings,
            log_payload=args.log_payload,
        )
    rules = result.rules
    print(
        f"{result.packets} packets, {result.flows} flows, {result.alerts} alerts; "
        f"rules: {rules['rules_loaded']} loaded, {rules['rules_skipped']} skipped, "
        f"{rules['rules_failed']} failed",
        file=report,
    )
    reasons = list(rules["skip_reasons"].items())
    if reasons:
        shown = ", ".join(f"{reason} ({n})" for reason, n in reasons[:5])
        more = f", and {len(reasons) - 5} more reasons" if len(reasons) > 5 else ""
        print(
            f"skipped rules: {shown}{more} (all in the stats event; `dpi rules check` lists them)",
            file=sys.stderr,
        )
    for err in rules["rule_errors"][:10]:
        print(f"dpi scan: rule error: {err}", file=sys.stderr)
    if args.eve != "-":
        _print_alert_table(args.eve, report)
        print(f"EVE JSON written to {args.eve}", file=report)
    for err in result.capture_errors:
        print(f"dpi scan: error: {err}", file=sys.stderr)
    return 1 if result.capture_errors else 0


def _print_alert_table(eve_path: str, out) -> None:
    counts: Counter[tuple[int, str]] = Counter()
    with open(eve_path, encoding="utf-8") as fh:
        for line in fh:
            event = json.loads(line)
            if event.get("event_type") == "alert":
                counts[(event["alert"]["signature_id"], event["alert"]["signature"])] += 1
    for (sid, msg), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"  {n:6d}  [1:{sid}] {msg}", file=out)


def cmd_streams(args) -> int:
    from dpi.output.streams import write_streams

    settings = _settings("streams", args)
    if settings is None or _missing("streams", args.pcap):
        return 2
    writer, errors = write_streams(args.pcap, args.out, reader=args.reader, settings=settings)
    gaps = sum(len(sf.gaps) for sf in writer.files.values())
    total = sum(sf.bytes for sf in writer.files.values())
    print(f"{len(writer.files)} stream directions, {total} bytes, {gaps} gaps: {args.out}/index.json")
    for err in errors:
        print(f"dpi streams: error: {err}", file=sys.stderr)
    return 1 if errors else 0


def cmd_flows(args) -> int:
    from dpi.pipeline import flows_only

    settings = _settings("flows", args)
    if settings is None or _missing("flows", args.pcap):
        return 2
    with _eve_output(args.eve) as (out, report):
        result = flows_only(args.pcap, out, reader=args.reader, settings=settings)
    states = ", ".join(f"{k} {v}" for k, v in result.flow_states.items())
    print(f"{result.packets} packets, {result.flows} flows ({states})", file=report)
    for err in result.capture_errors:
        print(f"dpi flows: error: {err}", file=sys.stderr)
    return 1 if result.capture_errors else 0


def cmd_info(args) -> int:
    from dpi.info import render, summarize

    if _missing("info", args.pcap):
        return 2
    status = 0
    docs = []
    for path in args.pcap:
        summary = summarize(path, reader=args.reader, progress=not args.json)
        if summary.error:
            status = 1
        if args.json:
            docs.append(summary.to_dict())
        else:
            print(render(summary))
            if summary.error:
                print(f"dpi info: error: {summary.error}", file=sys.stderr)
    if args.json:
        print(json.dumps(docs[0] if len(docs) == 1 else docs, indent=2))
    return status


def cmd_rules_check(args) -> int:
    """Load rule files; print what loaded, what was skipped (by reason, by keyword) and
    every syntax error as file:line:column. Exit status 1 when there is a syntax error."""
    from dpi.rules import load_rules
    from dpi.settings import SettingsError, load_settings

    try:
        settings = load_settings(args.config, [])
    except SettingsError as exc:
        print(f"dpi rules check: error: {exc}", file=sys.stderr)
        return 2
    variables = {**settings.variables, **_parse_vars(args.var)}
    ruleset = load_rules(args.rules, variables=variables)
    summary = ruleset.summary(top=args.top)
    if args.json:
        summary["rule_errors"] = [
            {"file": e.file, "line": e.line, "column": e.column, "message": e.message, "sid": e.sid}
            for e in ruleset.errors
        ]
        summary["skipped_rules"] = [
            {"file": r.file, "line": r.line, "sid": r.sid, "reason": r.reason, "keyword": r.keyword}
            for r in ruleset.skipped
        ]
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(
            f"{len(ruleset.rules)} rules loaded, {len(ruleset.skipped)} skipped, {len(ruleset.errors)} errors"
        )
        print("skipped by reason:")
        for reason, n in ruleset.skip_reasons().most_common(args.top):
            print(f"  {n:6d}  {reason}")
        print("skipped by keyword:")
        for keyword, n in ruleset.skip_keywords().most_common(args.top):
            print(f"  {n:6d}  {keyword}")
        for err in ruleset.errors:
            print(f"error: {err}")
        if args.list:
            for s in ruleset.skipped:
                print(f"{s.file}:{s.line}: sid {s.sid}: skipped: {s.reason}")
    return 1 if ruleset.errors else 0


def _bench_sweeps(text: str) -> tuple[str, ...] | None:
    from dpi.bench.run import SWEEPS

    if text.strip().lower() in ("", "none"):
        return ()
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [n for n in names if n not in SWEEPS]
    if unknown:
        print(
            f"dpi bench: unknown sweep {unknown[0]!r}; choose from {', '.join(SWEEPS)} or none",
            file=sys.stderr,
        )
        return None
    return names


def cmd_bench(args) -> int:
    from dpi.bench.run import BenchConfig, format_table, run_bench, write_results

    if getattr(args, "bench_command", None) == "nic":
        return cmd_bench_nic(args)
    sweeps = _bench_sweeps(args.sweep)
    if sweeps is None or _missing("bench", args.rules):
        return 2
    if args.packets < 100:
        print(f"dpi bench: --packets {args.packets}: at least 100 packets are needed", file=sys.stderr)
        return 2
    config = BenchConfig(
        rule_paths=list(args.rules),
        packets=args.packets,
        payload_len=args.payload,
        flows=args.flows,
        seed=args.seed,
        repeat=args.repeat,
        sweeps=sweeps,
    )
    result = run_bench(config)
    written = write_results(result, args.out) if args.out else []
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_table(result))
    for path in written:
        print(f"dpi bench: wrote {path}", file=sys.stderr)
    return 0


def cmd_live(args) -> int:
    """Capture from an interface's memory-mapped ring through the scan pipeline."""
    from dpi.capture.bpf import LibpcapMissingError
    from dpi.capture.live import LiveCaptureError
    from dpi.capture.netns import NetnsError
    from dpi.live import run_live

    settings = _settings("live", args)
    if settings is None or _missing("live", list(args.rules)):
        return 2
    variables = {**settings.variables, **_parse_vars(args.var)}

    def ready() -> None:
        print(f"dpi live: capturing on {args.iface}", file=sys.stderr, flush=True)

    with _eve_output(args.eve) as (out, report):
        try:
            result = run_live(
                args.iface, list(args.rules), out, bpf=args.bpf, user=args.user, max_packets=args.count,
                duration=args.duration, idle_timeout=args.idle_timeout, engine=args.engine,
                settings=settings, variables=variables, on_ready=ready,
            )  # fmt: skip
        except (OSError, ValueError, LiveCaptureError, LibpcapMissingError, NetnsError) as exc:
            print(f"dpi live: {exc}", file=sys.stderr)
            return 1
    print(f"{result.packets} packets, {result.flows} flows, {result.alerts} alerts", file=report)
    return 0


def cmd_bench_nic(args) -> int:
    from dpi.bench.nic import NicBenchError, NicConfig, format_nic_table, parse_rates, run_nic_bench

    try:
        rates = parse_rates(args.rates)
    except ValueError as exc:
        print(f"dpi bench nic: --rates: {exc}", file=sys.stderr)
        return 2
    if _missing("bench nic", [args.replay, *args.rules]):
        return 2
    config = NicConfig(
        replay=args.replay, rates=rates, iface=args.iface, capture_iface=args.capture_iface,
        rule_paths=list(args.rules), loops=args.loops, idle=args.idle,
    )  # fmt: skip
    try:
        result = run_nic_bench(config)
    except NicBenchError as exc:
        print(f"dpi bench nic: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2) if args.json else format_nic_table(result))
    return 0


def _add_settings_option(parser: argparse.ArgumentParser) -> None:
    from dpi.settings import settings_help

    parser.add_argument(
        "--config",
        metavar="FILE",
        help="a suricata.yaml-layout file: the keys listed below are read, other sections ignored",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Suricata-style setting over --config (repeatable); the keys are listed below",
    )
    parser.epilog = settings_help()
    parser.formatter_class = argparse.RawDescriptionHelpFormatter


def cmd_gen(args) -> int:
    """A labelled capture: a protocol mix with rule content planted and evasions applied."""
    from dpi.gen.evasion import parse_evasions
    from dpi.gen.generator import GenConfig, generate, write_generated
    from dpi.gen.traffic import Sizes

    if _missing("gen", args.rules):
        return 2
    try:
        config = GenConfig(
            flows=args.flows, seed=args.seed, rules=list(args.rules), variables=_parse_vars(args.var) or None,
            planted=args.planted, sids=[int(s) for s in args.sids.split(",")] if args.sids else None,
            evasions=parse_evasions(args.evasion), evasion_share=args.evasion_share,
            target_policy=args.target_policy, tls_share=args.tls_share, ipv6_share=args.ipv6_share,
            vlan_share=args.vlan_share, duration_s=args.duration,
            sizes=Sizes(body_median=args.body_median, body_sigma=args.body_sigma), mss=args.mss,
            seg_size=args.seg_size, window=args.window, frag_size=args.frag_size,
        )  # fmt: skip
        generated = generate(config)
    except ValueError as exc:
        print(f"dpi gen: {exc}", file=sys.stderr)
        return 2
    write_generated(generated, args.out, args.labels)
    capture = generated.labels.capture
    print(
        f"{generated.packets} packets, {generated.flows} flows ({capture['planted_flows']} planted from "
        f"{capture['plantable_rules']} plantable rules; evasions: {','.join(capture['evasions']) or 'none'}) "
        f"in {generated.seconds:.2f} s -> {args.out}, labels {args.labels}"
    )
    return 0


def cmd_eval(args) -> int:
    """Precision, recall and F1 of an EVE alert log against a label file."""
    from dpi.evaluation import EveError, evaluate_files, format_report
    from dpi.gen.labels import LabelError

    if _missing("eval", [args.labels, args.eve]):
        return 2
    try:
        result = evaluate_files(args.labels, args.eve, args.policy)
    except (EveError, LabelError) as exc:
        print(f"dpi eval: {exc}", file=sys.stderr)
        return 2
    print(result.to_json() if args.json else format_report(result.report, args.limit))
    return 0


def cmd_notebooks(args) -> int:
    """Re-execute the evaluation notebooks on the bundled data; save them executed, and as HTML."""
    from dpi.notebooks import NotebookError, run_notebooks

    try:
        import ipykernel  # noqa: F401
        import nbclient  # noqa: F401
        import nbconvert  # noqa: F401
    except ImportError as exc:
        hint = "install them with: python3 -m pip install '.[notebooks]'"
        print(f"dpi notebooks: {exc}; {hint}", file=sys.stderr)
        return 2
    try:
        results = run_notebooks(args.only or None, small=args.small, out_dir=args.out, html=not args.no_html)
    except NotebookError as exc:
        print(f"dpi notebooks: {exc}", file=sys.stderr)
        return 1
    for r in results:
        print(f"{r.name}: executed in {r.seconds:.0f} s -> {r.notebook}" + (f", {r.html}" if r.html else ""))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dpi", description="Deep-packet-inspection research testbed")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("scan", help="run rules over captures, write EVE JSON alerts")
    p.add_argument("pcap", nargs="+", help="pcap or pcapng files")
    p.add_argument("--rules", "-r", nargs="+", required=True, help="Suricata-syntax rule files")
    p.add_argument("--eve", default="eve.json", help="EVE JSON output path ('-' for stdout)")
    p.add_argument("--reader", choices=READERS, default="native")
    p.add_argument("--engine", default="numba", help="matcher engine: numba, pyahocorasick, hyperscan")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    p.add_argument("--var", action="append", default=[], help="rule variable, e.g. HOME_NET=[10.0.0.0/8]")
    p.add_argument(
        "--log-payload",
        action="store_true",
        help="write each alert's packet payload (base64 and printable), as Suricata's payload: yes",
    )
    _add_settings_option(p)
    p.set_defaults(func=cmd_scan)

    p = sub.add_parser("flows", help="write one EVE flow event per flow (and a stats event)")
    p.add_argument("pcap", nargs="+")
    p.add_argument("--eve", default="flows.json", help="EVE JSON output path ('-' for stdout)")
    p.add_argument("--reader", choices=READERS, default="native")
    _add_settings_option(p)
    p.set_defaults(func=cmd_flows)

    p = sub.add_parser("streams", help="write each reassembled TCP direction to a file (tcpflow names)")
    p.add_argument("pcap", nargs="+")
    p.add_argument("--out", "-o", required=True, help="output folder (created if missing)")
    p.add_argument("--reader", choices=READERS, default="native")
    _add_settings_option(p)
    p.set_defaults(func=cmd_streams)

    p = sub.add_parser("info", help="capinfos-like summary of captures")
    p.add_argument("pcap", nargs="+")
    p.add_argument("--json", action="store_true")
    p.add_argument("--reader", choices=READERS, default="native")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser(
        "bench",
        help="throughput per stage and end to end (Gbps, Mpps), sweeps, line rates",
    )
    p.add_argument("--rules", "-r", nargs="+", default=["rules/dpi-sample.rules"], help="rule files")
    p.add_argument("--packets", type=int, default=100_000, help="packets in each generated capture")
    p.add_argument("--payload", type=int, default=512, help="TCP payload bytes per data segment")
    p.add_argument("--flows", type=int, default=1000, help="concurrent flows")
    p.add_argument("--seed", type=int, default=1, help="seed of the generated captures")
    p.add_argument("--repeat", type=int, default=2, help="rounds per measurement (the best counts)")
    p.add_argument("--sweep", default="rules,size,flows", help="sweeps to run: rules,size,flows or none")
    p.add_argument("--out", help="folder for bench.json and the PNG plots")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=cmd_bench)
    bsub = p.add_subparsers(dest="bench_command")
    n = bsub.add_parser("nic", help="replay a capture with tcpreplay at set rates, capture it with dpi live")
    n.add_argument("--replay", required=True, help="capture to send (pcap)")
    n.add_argument(
        "--rates", default="10,100,top", help="Mbps to send at, comma-separated; 'top': tcpreplay's top speed"
    )
    n.add_argument(
        "--iface", help="interface to send on and capture from (default: a veth pair in a namespace)"
    )
    n.add_argument(
        "--capture-iface", help="capture on this interface instead (a cabled loop between two ports)"
    )
    n.add_argument("--rules", "-r", nargs="+", default=[], help="rule files for dpi live")
    n.add_argument("--loops", type=int, default=10, help="times tcpreplay sends the capture at each rate")
    n.add_argument("--idle", type=float, default=2.0, help="seconds without a packet before dpi live stops")
    n.add_argument("--json", action="store_true", help="print the result as one JSON object")

    p = sub.add_parser(
        "live", help="capture from an interface (AF_PACKET TPACKET_V3 ring) through the pipeline"
    )
    p.add_argument("--iface", "-i", required=True, help="interface to capture on")
    p.add_argument("--rules", "-r", nargs="+", default=[], help="Suricata-syntax rule files")
    p.add_argument("--eve", default="eve.json", help="EVE JSON output path ('-' for stdout)")
    p.add_argument("--bpf", help="capture filter, in tcpdump's syntax (compiled by libpcap)")
    p.add_argument("--user", help="after the socket opens, drop root privileges to this user")
    p.add_argument("--count", type=int, help="stop after this many packets")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--idle-timeout", type=float, help="stop after this many seconds without a packet")
    p.add_argument("--engine", default="numba", help="matcher engine: numba, pyahocorasick, hyperscan")
    p.add_argument("--var", action="append", default=[], help="rule variable, e.g. HOME_NET=[10.0.0.0/8]")
    _add_settings_option(p)
    p.set_defaults(func=cmd_live)

    from dpi.gen.evasion import EVASIONS
    from dpi.hostos import HOST_OS_POLICIES

    p = sub.add_parser("gen", help="write a labelled capture: protocol mix, planted rule content, evasions")
    p.add_argument("--out", "-o", required=True, help="pcap to write")
    p.add_argument("--labels", required=True, help="ground-truth label file to write (JSON Lines)")
    p.add_argument("--rules", "-r", nargs="+", required=True, help="rule files whose content is planted")
    p.add_argument("--flows", type=int, default=1000, help="flows in the capture")
    p.add_argument("--seed", type=int, default=1, help="the same seed writes the same capture and labels")
    p.add_argument("--planted", type=int, help="flows carrying a rule's content (default: a tenth)")
    p.add_argument("--sids", help="plant only these sids, comma-separated")
    p.add_argument(
        "--evasion", default="", help=f"transforms to combine, comma-separated: {', '.join(EVASIONS)}"
    )
    p.add_argument(
        "--evasion-share", type=float, default=1.0, help="share of planted flows evaded (default all)"
    )
    p.add_argument(
        "--target-policy",
        choices=HOST_OS_POLICIES,
        default="bsd",
        help="overlap policy of the hosts the content is sent to (overlap evasions aim at it)",
    )
    p.add_argument(
        "--tls-share", type=float, help="share of flows that are TLS (the rest keep the default mix)"
    )
    p.add_argument("--ipv6-share", type=float, default=0.1, help="share of flows over IPv6")
    p.add_argument("--vlan-share", type=float, default=0.05, help="share of flows in an 802.1Q VLAN")
    p.add_argument("--duration", type=float, default=10.0, help="seconds over which flows start")
    p.add_argument("--body-median", type=float, default=2000.0, help="median body bytes (lognormal)")
    p.add_argument("--body-sigma", type=float, default=1.0, help="sigma of the body size's logarithm")
    p.add_argument("--mss", type=int, help="every flow's MSS (default: a mix of 536..1460)")
    p.add_argument("--seg-size", type=int, default=8, help="tcp-seg: payload bytes a segment")
    p.add_argument("--window", type=int, default=32, help="tcp-window: the advertised window")
    p.add_argument("--frag-size", type=int, default=8, help="ip-frag: data bytes a fragment (multiple of 8)")
    p.add_argument("--var", action="append", default=[], help="rule variable, e.g. HOME_NET=[10.0.0.0/8]")
    p.set_defaults(func=cmd_gen)

    p = sub.add_parser("eval", help="precision, recall and F1 of EVE alerts against a gen label file")
    p.add_argument("--labels", required=True, help="label file written by dpi gen")
    p.add_argument("--eve", required=True, help="EVE JSON with the alerts (dpi scan's or Suricata's)")
    p.add_argument(
        "--policy",
        choices=HOST_OS_POLICIES,
        help="overlap policy the scanner used (default: the label file's target)",
    )
    p.add_argument("--json", action="store_true", help="the report as JSON (top-level precision, recall, f1)")
    p.add_argument(
        "--limit", type=int, default=20, help="missed and spurious flows listed in the text report"
    )
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("notebooks", help="re-execute the evaluation notebooks and export them to HTML")
    p.add_argument("--small", action="store_true", help="small inputs (a quick check; CI runs them so)")
    p.add_argument("--only", nargs="+", help="notebooks whose names start with these (e.g. 01 03)")
    p.add_argument("--out", help="folder for the executed notebooks (default notebooks/; HTML in its html/)")
    p.add_argument("--no-html", action="store_true", help="do not export HTML")
    p.set_defaults(func=cmd_notebooks)

    p = sub.add_parser("rules", help="rule set tools")
    rsub = p.add_subparsers(dest="rules_command", required=True)
    c = rsub.add_parser("check", help="parse rule files and report what loads and what is skipped")
    c.add_argument("rules", nargs="+")
    c.add_argument("--var", action="append", default=[], help="rule variable over --config's vars")
    c.add_argument("--config", metavar="FILE", help="a suricata.yaml-layout file: its vars: section is read")
    c.add_argument("--json", action="store_true", help="the same report, and every error and skip, as JSON")
    c.add_argument("--top", type=int, default=20)
    c.add_argument("--list", action="store_true", help="list every skipped rule with its place and reason")
    c.set_defaults(func=cmd_rules_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        # the reader of our output went away (e.g. `| head`): not an error of ours
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
