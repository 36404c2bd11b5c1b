"""The logon with nothing to do: `autoenroll run` with a valid certificate present, against `python -c pass`.

    .venv/bin/python bench/agent_noop.py [--runs 40] [--target-ms 150] [--config FILE --home DIR]

Without --config it prepares a user the way a finished enrollment leaves one: a certificate for
bench@test.com from a CA named like the configured issuer, installed by the agent's own folder store, and
the state file with the mail from the last sync. The requestpath names a host that does not resolve: a
run that contacted the server would fail (exit 35) and the benchmark says so. Runs of both commands are
interleaved so that both see the same machine load; prints min / median / p90 wall time and the
agent's extra cost over a bare interpreter start. Exit status 1 when the agent's median misses the target.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

MAIL = "bench@test.com"
ISSUER = "autoenroll bench S/MIME CA"


def prepare(home: Path) -> Path:
    """A home directory holding what a completed enrollment leaves; returns its autoenroll.conf."""
    env_before = dict(os.environ)
    os.environ.update(
        HOME=str(home), XDG_DATA_HOME=str(home / ".local/share"), XDG_STATE_HOME=str(home / ".local/state")
    )
    try:
        from autoenroll.agent.enroll import State, state_path
        from autoenroll.agent.stores.base import Request
        from autoenroll.agent.stores.folder import FolderStore

        now = datetime.datetime.now(datetime.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
        ca = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, MAIL)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(MAIL)]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        FolderStore().install(Request("", key), leaf, [ca])
        State(  # as an enrollment leaves it: the daily revocation check is a day away
            principal="bench@TEST.COM",
            mail=MAIL,
            cn="Bench",
            next_revocation_check={"serial": format(leaf.serial_number, "x"), "at": time.time() + 86400},
            path=state_path(),
        ).save()
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    conf = home / "autoenroll.conf"
    conf.write_text(
        f"requestpath=https://ccm.invalid:8443\nissuername={ISSUER}\ndays=30\ndomainname=test.com\ncustomeruri=bench\n"
    )
    return conf


def agent_command(conf: Path) -> list[str]:
    script = Path(sys.executable).parent / "autoenroll"
    head = [str(script)] if script.exists() else [sys.executable, "-m", "autoenroll.agent"]
    return [*head, "--config", str(conf), "run"]


def timed(cmd: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()}")
    return elapsed


def summary(name: str, samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p90 = ms[min(len(ms) - 1, int(len(ms) * 0.9))]
    return f"{name:<28} min {ms[0]:6.1f} ms   median {statistics.median(ms):6.1f} ms   p90 {p90:6.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--target-ms", type=float, default=150.0)
    parser.add_argument("--config", type=Path, help="an enrolled user's autoenroll.conf (with --home)")
    parser.add_argument("--home", type=Path, help="that user's HOME")
    args = parser.parse_args()

    work = None
    if args.config:
        home, conf = (args.home or Path.home()), args.config
    else:
        work = Path(tempfile.mkdtemp(prefix="autoenroll-bench-"))
        home = work / "home"
        home.mkdir()
        conf = prepare(home)
    env = {"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    if os.environ.get("KRB5CCNAME"):
        env["KRB5CCNAME"] = os.environ["KRB5CCNAME"]
    log = home / ".local/state/autoenroll/log/autoenroll.log"
    try:
        agent, bare = agent_command(conf), [sys.executable, "-c", "pass"]
        for _ in range(3):  # warm the page cache and .pyc files
            timed(agent, env), timed(bare, env)
        agent_s, bare_s = [], []
        for _ in range(args.runs):
            bare_s.append(timed(bare, env))
            agent_s.append(timed(agent, env))
        last = log.read_text().splitlines()[-1] if log.exists() else "(no log)"
        print(f"{args.runs} runs each, interleaved; Python {sys.version.split()[0]} on {sys.platform}")
        print(summary("python -c pass", bare_s))
        print(summary("autoenroll run (no-op)", agent_s))
        extra = statistics.median(agent_s) - statistics.median(bare_s)
        median_ms = statistics.median(agent_s) * 1000
        verdict = "within" if median_ms <= args.target_ms else "OVER"
        print(f"agent's own cost (median difference) {extra * 1000:.1f} ms; "
              f"median {median_ms:.1f} ms {verdict} the {args.target_ms:g} ms target")  # fmt: skip
        print(f"log: {last}")
        if "nothing to do" not in last:
            print("the last run did not take the no-op path", file=sys.stderr)
            return 1
        return 0 if median_ms <= args.target_ms else 1
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
