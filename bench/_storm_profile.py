"""py-spy on the server while bench/storm.py drives it: where the workers' CPU goes.

`py-spy record --subprocesses --format raw` writes one line per distinct stack ("frame;frame;... count",
root first). Two views are made from it: the leaf frames (self time) and the share of samples whose
stack passes through each part of a request (inclusive time), by the markers below.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

# Parts of a request, tested in this order on each stack (leaf to root); the first that matches wins.
PARTS = (
    ("CA: build, sign, verify certificate", ("issue_smime_certificate", "pki/certificates.py", "pki/backends.py")),
    ("database (Django ORM + driver)", ("django/db/", "sqlite3", "psycopg/")),
    ("SPNEGO (token parse, gssapi accept)", ("kerberos/spnego.py", "gssapi/")),
    ("LDAP search in AD (libldap or ldap3)", ("ldap/ldapobject.py", "ldap3/", "directory/ldap.py")),
    ("CSR parse and checks", ("public_key_from_csr", "_csr_identity_check", "load_pem_x509_csr")),
    ("TLS handshake / socket I/O", ("do_handshake", "ssl.py", "wrap_socket")),
    ("request logging", ("logging/__init__.py", "granian/log.py")),
    ("request handling (ninja, pydantic, pipeline code)", ("ninja/", "pydantic", "autoenroll/")),
    ("Django request cycle (middleware, URLs)", ("django/",)),
    ("Granian's WSGI bridge (TLS and HTTP are in Rust, not sampled)", ("granian/",)),
)


def py_spy() -> str | None:
    return shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")


def start(pid: int, seconds: float, out: Path, rate: int = 100, gil: bool = False) -> subprocess.Popen:
    """Sample every thread that is not idle (wall view: includes waits in C, e.g. for the database), or with
    `gil` only the threads holding the GIL (the Python code's CPU)."""
    binary = py_spy()
    if binary is None:
        raise RuntimeError("py-spy is not installed: .venv/bin/pip install py-spy")
    cmd = [binary, "record", "--pid", str(pid), "--subprocesses", "--nonblocking", "--format", "raw"]
    cmd += ["--gil"] if gil else []
    cmd += ["--rate", str(rate), "--duration", str(max(1, round(seconds))), "--output", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _frames(stack: str) -> list[str]:
    # the root is "process 123:"python -m ..."" when --subprocesses is on; drop it and thread roots
    return [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]


def _side_process(stack: str) -> bool:
    """Samples not of a worker serving logons: the server's main process under `serve`, the CRL
    watcher and the publication listener (the watcher's CRL build would count as request handling)."""
    processes = [f for f in stack.split(";") if f.startswith("process ")]
    if len(processes) < 2:  # with --subprocesses the workers sit under the arbiter's root
        return bool(processes)
    return any("crl --watch" in p or "autoenroll-publication" in p or "--publication-only" in p for p in processes)


def _short(frame: str) -> str:
    m = _FRAME.match(frame)
    if not m:
        return frame
    return f"{m['func']} ({m['file']})"


def analyse(raw: Path, top: int = 15) -> dict:
    """{'samples', 'parts': [(name, share)], 'self': [(frame, share)], 'inclusive': [(frame, share)]}."""
    stacks: list[tuple[list[str], int]] = []
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if count.isdigit() and not _side_process(stack):
            stacks.append((_frames(stack), int(count)))
    total = sum(n for _, n in stacks) or 1
    parts: Counter = Counter()
    leaf: Counter = Counter()
    inclusive: Counter = Counter()
    for frames, n in stacks:
        if not frames:
            continue
        leaf[_short(frames[-1])] += n
        for frame in {_short(f) for f in frames}:
            inclusive[frame] += n
        text = ";".join(frames)
        for name, markers in PARTS:
            if any(m in text for m in markers):
                parts[name] += n
                break
        else:
            parts["other"] += n

    def share(counter: Counter, k: int) -> list[tuple[str, float]]:
        return [(name, n / total) for name, n in counter.most_common(k)]

    interesting = Counter({f: n for f, n in inclusive.items() if "autoenroll" in f or "gssapi" in f or "ssl" in f})
    return {
        "samples": total,
        "parts": share(parts, len(PARTS) + 1),
        "self": share(leaf, top),
        "inclusive": share(interesting, top),
    }
