"""Helpers of bench/storm.py that deal with processes: CPU and RSS from /proc, a throw-away PostgreSQL
cluster, a second server instance on the same database, and cfssl as the signing peer.

Every process here is started by us and stopped by its PID (or with pg_ctl for PostgreSQL).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# ---- /proc -------------------------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, float, int, float] | None:
    """(ppid, CPU seconds incl. reaped children, RSS bytes, of the CPU seconds those in the kernel) of a
    process, None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    f = raw.rsplit(")", 1)[1].split()
    # after the command: state ppid ... utime(11) stime(12) cutime(13) cstime(14) ... rss(21)
    cpu = (int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])) / CLK_TCK
    return int(f[1]), cpu, int(f[21]) * PAGE, (int(f[12]) + int(f[14])) / CLK_TCK


def _children_map() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st is not None:
                out.setdefault(st[0], []).append(int(entry.name))
    return out


def process_tree(root: int, children: dict[int, list[int]] | None = None) -> list[int]:
    """root and all its descendants alive now (bounded by the size of /proc)."""
    children = _children_map() if children is None else children
    seen, todo = [], [root]
    while todo and len(seen) < 10_000:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.append(pid)
        todo.extend(children.get(pid, []))
    return seen


def tree_cpu(roots: list[int], only: tuple[str, ...] = (), kernel: bool = False) -> float:
    """CPU seconds used so far by the process trees under `roots` (alive processes + their reaped children);
    with `only`, by the processes whose command line holds one of these strings; with `kernel`, of it the
    seconds in the kernel (system calls: sockets, files)."""
    children = _children_map()
    total = 0.0
    for root in roots:
        for pid in process_tree(root, children):
            st = _stat(pid)
            if st is not None and (not only or any(part in cmdline(pid) for part in only)):
                total += st[3] if kernel else st[1]
    return total


#: The processes of `serve` that work off the request path: CRLs and OCSP answers signed ahead, the audit
#: sealer, the notices. Their CPU is part of the server's and is also shown by itself.
WATCHERS = ("crl --watch", "audit seal", "notify --watch")
SERVER_WATCHERS = "of which server watchers"
SERVER_KERNEL = "of which in the server's kernel calls"
PARTS = (SERVER_WATCHERS, SERVER_KERNEL)  # parts of "server", not counted again in "other"


def machine_busy() -> float:
    """CPU seconds the whole machine spent not idle, all CPUs (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / CLK_TCK


def self_cpu() -> float:
    t = os.times()
    return t.user + t.system


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def worker_rss(master: int) -> list[int]:
    """RSS in bytes of each worker of `serve`'s HTTPS server `master` (its children named after it)."""
    own = cmdline(master)
    out = []
    for pid in _children_map().get(master, []):
        if cmdline(pid).startswith(own + " worker-"):
            st = _stat(pid)
            if st is not None:
                out.append(st[2])
    return sorted(out)


@dataclass
class CPUMeter:
    """CPU seconds of named process groups between start() and stop(), plus the whole machine."""

    groups: dict[str, list[int]]
    start_values: dict[str, float] = field(default_factory=dict)
    result: dict[str, float] = field(default_factory=dict)
    wall: float = 0.0

    def _sample(self) -> dict[str, float]:
        values = {}
        for name, pids in self.groups.items():
            values[name] = tree_cpu(pids)
            if name == "server":  # included in "server": not counted twice in "other"
                values[SERVER_WATCHERS] = tree_cpu(pids, only=WATCHERS)
                values[SERVER_KERNEL] = tree_cpu(pids, kernel=True)
        values["load generator"] = self_cpu()
        values["machine"] = machine_busy()
        values["_wall"] = time.perf_counter()
        return values

    def start(self) -> CPUMeter:
        self.start_values = self._sample()
        return self

    def stop(self) -> dict[str, float]:
        end = self._sample()
        self.wall = end.pop("_wall") - self.start_values["_wall"]
        self.result = {k: max(0.0, v - self.start_values[k]) for k, v in end.items()}
        named = sum(v for k, v in self.result.items() if k != "machine" and k not in PARTS)
        self.result["other"] = max(0.0, self.result["machine"] - named)
        return self.result

    def shares(self) -> dict[str, float]:
        """Each group's CPU in cores (CPU seconds / wall seconds)."""
        return {k: v / self.wall for k, v in self.result.items()} if self.wall else {}


# ---- ports and processes -----------------------------------------------------------------------------------


def free_port(ip: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s:\n{log.read_text()[-2000:]}")


def stop_process(proc: subprocess.Popen | None, timeout: float = 15) -> None:
    """SIGTERM the process we started (by its PID), wait, SIGKILL if it does not go."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


# ---- PostgreSQL --------------------------------------------------------------------------------------------


class Postgres:
    """A throw-away cluster from Debian's package on 127.0.0.1 (as scripts/with-postgres, in Python).

    synchronous_commit=off matches the SQLite setting of the server (WAL, synchronous=NORMAL): a commit
    survives a crash of the server, not a power cut. fsync stays on.
    """

    def __init__(self) -> None:
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
        if not bins:
            raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql")
        self.bindir = bins[-1]
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="autoenroll-storm-pg-"))
        self.as_pg: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            self.as_pg = ["runuser", "-u", "postgres", "--"]
        self.started = False

    @property
    def url(self) -> str:
        return f"postgresql://autoenroll@127.0.0.1:{self.port}/postgres"

    @property
    def version(self) -> str:
        return subprocess.run([self.bindir / "postgres", "--version"], capture_output=True, text=True).stdout.strip()

    @property
    def pid(self) -> int:
        return int((self.dir / "data" / "postmaster.pid").read_text().splitlines()[0])

    def _pg(self, *args: str, timeout: float = 60) -> None:
        subprocess.run([*self.as_pg, *args], check=True, capture_output=True, timeout=timeout)

    def start(self) -> Postgres:
        data = self.dir / "data"
        self._pg(str(self.bindir / "initdb"), "-D", str(data), "-U", "autoenroll", "--auth=trust", "-E", "UTF8")
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.dir} "
            "-c synchronous_commit=off -c max_connections=100 -c shared_buffers=256MB"
        )
        pg_ctl = str(self.bindir / "pg_ctl")
        self._pg(pg_ctl, "-D", str(data), "-l", str(self.dir / "log"), "-w", "-t", "30", "-o", options, "start")
        self.started = True
        return self

    def stop(self) -> None:
        try:
            if self.started:
                self._pg(
                    str(self.bindir / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "fast", "-w", "-t", "30", "stop"
                )
                self.started = False
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


# ---- a second server process on the same database -----------------------------------------------------------


@dataclass
class ExtraInstance:
    """Another `autoenroll-server serve` (HTTPS only) on the first one's data dir and database."""

    port: int
    process: subprocess.Popen

    def stop(self) -> None:
        stop_process(self.process)


def start_extra_instance(server, workers: int, timeout: float = 60) -> ExtraInstance:
    import ssl

    from autoenroll.testbed.server import wait_listening

    port = free_port()
    env = dict(server.env, AUTOENROLL_LISTEN=f"127.0.0.1:{port}", AUTOENROLL_WORKERS=str(workers))
    log = server.workdir / f"server-{port}.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "autoenroll.server.cli", "serve", "--no-publication"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_listening(port, proc, log, timeout, ssl.create_default_context(cafile=str(server.root_ca)))
    except BaseException:
        stop_process(proc)
        raise
    return ExtraInstance(port, proc)


# ---- cfssl -------------------------------------------------------------------------------------------------

CFSSL_CONFIG = """{"signing": {"default": {"expiry": "8760h",
  "usages": ["digital signature", "key encipherment", "email protection"]}}}
"""


class Cfssl:
    """`cfssl serve` on 127.0.0.1 with our issuing CA (its key decrypted into a 0700 temp dir, deleted in stop())."""

    def __init__(self, ca_cert: Path, ca_key: Path, passphrase_file: Path) -> None:
        self.binary = shutil.which("cfssl")
        if self.binary is None:
            raise RuntimeError("cfssl is not installed: apt-get install -y golang-cfssl")
        self.dir = Path(tempfile.mkdtemp(prefix="autoenroll-storm-cfssl-"))
        self.port = free_port()
        self.ca_cert, self.ca_key, self.passphrase_file = ca_cert, ca_key, passphrase_file
        self.process: subprocess.Popen | None = None

    @property
    def version(self) -> str:
        out = subprocess.run([self.binary, "version"], capture_output=True, text=True, timeout=10).stdout
        return " ".join(line.split(":", 1)[1].strip() for line in out.splitlines() if ":" in line)

    def start(self) -> Cfssl:
        key = self.dir / "ca-key.pem"
        old = os.umask(0o077)
        try:
            subprocess.run(
                [
                    "openssl",
                    "pkey",
                    "-in",
                    str(self.ca_key),
                    "-passin",
                    f"file:{self.passphrase_file}",
                    "-out",
                    str(key),
                ],
                check=True,
                capture_output=True,
                timeout=30,
            )
        finally:
            os.umask(old)
        (self.dir / "config.json").write_text(CFSSL_CONFIG)
        log = self.dir / "cfssl.log"
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    "serve",
                    "-address",
                    "127.0.0.1",
                    "-port",
                    str(self.port),
                    "-ca",
                    str(self.ca_cert),
                    "-ca-key",
                    str(key),
                    "-config",
                    str(self.dir / "config.json"),
                ],  # fmt: skip
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_port(self.port, self.process, log)
        return self

    def stop(self) -> None:
        try:
            stop_process(self.process)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)  # the clear CA key goes with it


# ---- CPU pinning -------------------------------------------------------------------------------------------


def parse_cpus(text: str) -> set[int]:
    """'0', '0,2', '0-1' -> a set of CPU numbers (as taskset -c takes them)."""
    cpus: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def _pin_tasks(pid: int | str, cpus: set[int]) -> int:
    """Pin every thread of a process (taskset -a -p); returns how many threads were pinned."""
    n = 0
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):  # a thread may end meanwhile
                os.sched_setaffinity(int(tid), cpus)
                n += 1
    return n


def pin_tree(roots: list[int], cpus: set[int]) -> list[int]:
    """Pin the process trees under `roots` (every thread of every process; what they fork later inherits it).
    Returns the PIDs pinned."""
    children = _children_map()
    pids = [pid for root in roots for pid in process_tree(root, children)]
    for pid in pids:
        _pin_tasks(pid, cpus)
    return pids


def pin_self(cpus: set[int]) -> None:
    """Pin every thread of this process (os.sched_setaffinity(0) alone would pin only the calling thread)."""
    _pin_tasks("self", cpus)


def affinity(pid: int | str) -> str:
    """The CPUs a process may run on, as /proc shows them ('0', '0-1')."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Cpus_allowed_list:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def describe_tree(roots: list[int]) -> list[dict]:
    """PID, command line and allowed CPUs of every process in the trees (for the output and the JSON)."""
    children = _children_map()
    return [
        {"pid": pid, "cmd": cmdline(pid)[:120], "cpus": affinity(pid)}
        for root in roots
        for pid in process_tree(root, children)
    ]


# ---- revoked certificates already in the database ----------------------------------------------------------

# Run inside `autoenroll-server shell -c` (the server's own database settings, SQLite or PostgreSQL): one
# INSERT ... SELECT of N rows. What the CRL reads is real (serial, revoked_at, revocation_reason, not_after
# in the future); pem and fingerprint only satisfy the constraints. Fields the benchmark does not know get
# their model default.
REVOKED_CODE = r"""
import datetime as dt
from django.db import connection, transaction
from django.utils import timezone
from autoenroll.server.certificates.models import Certificate, CertificateAuthority
n = {n}
ca = CertificateAuthority.objects.get(role="issuing", active=True)
now = timezone.now()
dtv = connection.ops.adapt_datetimefield_value
pg = connection.vendor == "postgresql"
hexs = (lambda w: f"lpad(to_hex(x), {{w}}, '0')") if pg else (lambda w: f"printf('%%0{{w}}x', x)")
exprs = {{
    "serial": ("'be0c' || " + hexs(12), None),
    "fingerprint_sha256": (hexs(64), None),
    "ca": ("%s", ca.pk), "profile": ("%s", "smime"), "person": ("NULL", None),
    "subject": ("%s", "CN=bench revoked"), "issuer": ("%s", ca.subject[:1000]), "mail": ("%s", ""),
    "not_before": ("%s", dtv(now - dt.timedelta(days=60))), "not_after": ("%s", dtv(now + dt.timedelta(days=300))),
    "public_key_sha256": ("%s", ""), "pem": ("%s", ""), "csr_pem": ("%s", ""), "status": ("%s", "revoked"),
    "revoked_at": ("%s", dtv(now - dt.timedelta(days=1))), "revocation_reason": ("%s", "key_compromise"),
    "revoked_by": ("%s", "bench/storm.py"), "replaces": ("NULL", None), "installed_at": ("NULL", None),
    "created": ("%s", dtv(now)),
}}
cols, sel, params = [], [], []
for f in Certificate._meta.concrete_fields:
    if f.primary_key:
        continue
    expr, value = exprs.get(f.name, ("%s", f.get_db_prep_save(f.get_default(), connection)))
    cols.append(connection.ops.quote_name(f.column))
    sel.append(expr)
    if expr == "%s":
        params.append(value)
table = connection.ops.quote_name(Certificate._meta.db_table)
if pg:
    sql = f"INSERT INTO {{table}} ({{', '.join(cols)}}) SELECT {{', '.join(sel)}} FROM generate_series(1, %s) AS x"
    params = [*params, n]
else:
    sql = (f"WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < %s) "
           f"INSERT INTO {{table}} ({{', '.join(cols)}}) SELECT {{', '.join(sel)}} FROM s")
    params = [n, *params]
with transaction.atomic(), connection.cursor() as cursor:
    cursor.execute(sql, params)
print(Certificate.objects.filter(ca=ca, status="revoked").count())
"""


def insert_revoked(server, n: int) -> tuple[int, float]:
    """Put n revoked certificates of the issuing CA into the server's database (while it is idle).
    Returns (revoked certificates of the CA now, seconds taken)."""
    t0 = time.perf_counter()
    count = int(server.shell(REVOKED_CODE.format(n=int(n))))
    return count, time.perf_counter() - t0


# What the server's watcher does after a revocation, run to the end: the revoked rows above get their OCSP
# answers signed ahead and the CRL is made. Rows revoked over months would have had both long before.
SETTLE_CODE = r"""
from autoenroll.server.certificates import publication
signed = 0
for _ in range(10_000):  # bounded: a round signs for at most PRESIGN_ROUND per CA
    done = publication.presign_ocsp()
    signed += done
    if not done:
        break
publication.refresh_crls()
print(signed)
"""


def settle(server) -> tuple[int, float]:
    """Sign ahead the OCSP answers due and make the CRLs, as the watcher would (while the server is idle).
    Returns (answers signed, seconds taken)."""
    t0 = time.perf_counter()
    signed = int(server.shell(SETTLE_CODE))
    return signed, time.perf_counter() - t0


def issuing_ca_name(server) -> str:
    """The active issuing CA's name (as in its CRL URL /crl/<name>.crl)."""
    return server.shell(
        "from autoenroll.server.certificates.models import CertificateAuthority as C; "
        "print(C.objects.get(role='issuing', active=True).name)"
    )
