"""``python -m autoenroll.testbed up DIR [--ip IP]`` / ``down DIR``: a detached test DC for demos and benchmarks."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from autoenroll.testbed.samba import TestbedError, attach, available, start


def main(argv: list[str] | None = None) -> int:
    """Start or stop a DC that outlives this process; ``up`` prints shell exports for its realm."""
    parser = argparse.ArgumentParser(prog="python -m autoenroll.testbed", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="clone the template into DIR and start samba (detached)")
    up.add_argument("dir", type=Path)
    up.add_argument("--ip", default="127.0.0.1", help="loopback address to serve on (default 127.0.0.1)")
    up.add_argument(
        "--max-runtime",
        type=int,
        default=8 * 3600,
        help="samba exits by itself after this many seconds (default 8 h)",
    )
    down = sub.add_parser("down", help="stop the DC started in DIR")
    down.add_argument("dir", type=Path)
    args = parser.parse_args(argv)

    try:
        if args.cmd == "up":
            ok, reason = available()
            if not ok:
                print(f"error: {reason}", file=sys.stderr)
                return 2
            dc = start(args.dir, ip=args.ip, max_runtime=args.max_runtime)
            for key, value in dc.env().items():
                print(f"export {key}={shlex.quote(value)}")
            print(f"export AUTOENROLL_DC_IP={shlex.quote(dc.ip)}")
            print(f"export AUTOENROLL_DC_KEYTAB={shlex.quote(str(dc.keytab))}")
            print(f"export AUTOENROLL_DC_TLS_CA={shlex.quote(str(dc.tls_ca))}")
            print(f"# samba pid {dc.pid} (also in {dc.workdir / 'samba.pid'}); stop with:")
            print(f"#   python -m autoenroll.testbed down {shlex.quote(str(dc.workdir))}")
            return 0
        attach(args.dir).stop()
        print(f"# stopped test DC in {args.dir}")
        return 0
    except TestbedError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
