"""``autoenroll``: the agent's command line.

    autoenroll [--config FILE] run [--force] [--verbose]   what the logon script runs
    autoenroll [--config FILE] status                      installed certificates (guide section 5)
    autoenroll [--config FILE] install-logon [--method systemd|autostart|launchagent] [--uninstall]

Exit codes: 0 done (or nothing due); 1-30 the server's numbered refusal; 31-41 the guide's client errors;
64 bad command line; 70 unexpected failure (a bug); 78 unusable configuration.
"""

from __future__ import annotations

import argparse
import sys

EXIT_USAGE = 64


class _Version(argparse.Action):
    """``--version``, looked up only when asked: importlib.metadata would slow every logon."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None) -> None:
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        from autoenroll import version

        print(f"{parser.prog} {version()}")
        parser.exit(0)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's default exit status 2 is the server's error 2
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="autoenroll", description="S/MIME certificates for Active Directory users, with no clicks.")
    p.add_argument("--config", metavar="FILE", help="autoenroll.conf to use (instead of the default locations)")
    p.add_argument("--log", metavar="FILE", help="log file (default: the platform's autoenroll.log)")
    p.add_argument("--version", action=_Version, help="print the version and exit")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="enroll or renew when due (the logon script's command)")
    run.add_argument("--force", action="store_true", help="enroll a new certificate even when none is due")
    run.add_argument("-v", "--verbose", action="store_true", help="also print the log lines")
    sub.add_parser("status", help="list installed certificates with issuer, serial, validity, days left")
    logon = sub.add_parser("install-logon", help="run `autoenroll run` at every logon of this user and daily")
    logon.add_argument("--method", default="auto", choices=("auto", "systemd", "autostart", "launchagent"))
    logon.add_argument("--uninstall", action="store_true", help="remove every entry any method wrote")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``autoenroll`` command; returns the exit code."""
    args = parser().parse_args(argv)
    from pathlib import Path

    from .config import ConfigError, load
    from .log import RunLog

    if args.command == "install-logon":
        from . import deploy

        try:
            done = deploy.install(args.method, args.config, uninstall=args.uninstall)
        except (ValueError, OSError) as exc:
            print(f"autoenroll: {exc}", file=sys.stderr)
            return EXIT_USAGE
        print("\n".join(done))
        return 0

    log = RunLog(Path(args.log) if args.log else None, echo=getattr(args, "verbose", False))
    try:
        config = load(args.config)
    except ConfigError as exc:
        from .enroll import EXIT_CONFIG

        if args.command == "run":
            log.warning(f"configuration: {exc}")
        print(f"autoenroll: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "status":
        from .enroll import status_lines

        try:
            lines, code = status_lines(config)
        except ValueError as exc:
            print(f"autoenroll: store: {exc}", file=sys.stderr)
            return 78
        print("\n".join(lines))
        return code
    from .enroll import Run

    return Run(config, log, force=args.force)()


if __name__ == "__main__":
    raise SystemExit(main())
