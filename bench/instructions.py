"""Instructions per logon: the server's CPU work for one renewal logon and its status report, counted by
valgrind's callgrind, which counts instructions, not seconds: the same on a busy machine as on an idle one.

    .venv/bin/python bench/instructions.py [--logons 10 110] [--src PATH ...] [--jobs N]

Runs tests/server/enrollment/instructions_loop.py (a real Samba DC; each request as a worker's thread of
`serve` answers it, committed, without Granian's HTTP and TLS) under callgrind twice per source tree, with a
few and with many logons; the difference divided by the difference in logons is the instructions of one logon
and report, whatever the start-up costs. `--src` compares trees (a `git archive` of another commit's src/ on
PYTHONPATH) in the same command; the figures of bench/README.md come from here. The runs go side by side
(`--jobs`, default the number of CPUs): a count does not depend on what else the machine does. About four
minutes per tree on one core.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOOP = "tests/server/enrollment/instructions_loop.py"


def instructions(src: Path, logons: int, made: int, dc_ip: str) -> int:
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (Debian: apt install valgrind)")
    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "callgrind.out"
        env = dict(os.environ, PYTHONPATH=str(src), AUTOENROLL_BENCH_LOGONS=str(logons), PYTHONHASHSEED="0")
        env["AUTOENROLL_BENCH_MADE"] = str(made)
        env["AUTOENROLL_TEST_DC_IP"] = dc_ip  # one DC each: runs started at once would all find the same free one
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-m", "pytest"]
        command += ["-q", "-p", "no:cacheprovider", "-o", "python_files=instructions_loop.py", LOOP]
        run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
        if run.returncode != 0:
            sys.exit(f"the loop failed ({src}, {logons} logons):\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
        found = re.search(r"Collected : (\d+)", run.stderr)
        if found is None:
            sys.exit(f"no instruction count in callgrind's output:\n{run.stderr[-2000:]}")
        return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logons", type=int, nargs=2, default=[10, 110], metavar=("FEW", "MANY"))
    parser.add_argument("--src", type=Path, nargs="*", default=[ROOT / "src"], help="source trees to compare")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="runs at once")
    args = parser.parse_args()
    few, many = args.logons
    runs = [(src.resolve(), n) for src in args.src for n in (few, many)]
    ips = [f"127.0.0.{10 + i}" for i in range(len(runs))]  # as long as each other: the same work per logon
    with ThreadPoolExecutor(args.jobs) as pool:
        counted = dict(zip(runs, pool.map(lambda run, ip: instructions(*run, many + 1, ip), runs, ips), strict=True))
    for src in args.src:
        counts = [counted[src.resolve(), n] for n in (few, many)]
        per_logon = (counts[1] - counts[0]) / (many - few)
        print(f"{src}: {per_logon / 1e6:.2f} M instructions per logon and report ({counts[0]:,} / {counts[1]:,})")


if __name__ == "__main__":
    main()
