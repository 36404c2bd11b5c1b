"""The load generator of bench/storm.py: AD users, their Kerberos tickets and CSRs, and both client protocols.

Everything a logon sends is made before the timed part (`prepare`): a fresh EC P-256 key and CSR per logon
and a fresh SPNEGO token per authenticated call (an AP-REQ made from the service ticket cached in the
user's in-memory ccache; each token is sent once, the server keeps a replay cache). The security context
of each token is kept, so the server's mutual-authentication token is still checked.

Two protocols (docs/protocol.md):
* `old`: sync -> enroll -> status, three authenticated calls (what agents before 0.2 do);
* `new`: logon -> logon/status, one authenticated call and a report authorised by the logon answer's
  status token.
Each logon opens a new TLS connection (keep-alive only between the calls of that logon; `per_call=True`
opens one per call in the old protocol), resuming the TLS session of the client thread's previous
connection to the same server when the server allows it. Every answer is checked: the certificate
certifies the CSR's key and carries the serial answered, the status token is there, the status answer is
ok and, for a renewal, names the replaced certificate as revoked. The client is http.client, not
requests, so the generator stays cheap.
"""

from __future__ import annotations

import base64
import http.client
import itertools
import json
import socket
import ssl
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import gssapi
import gssapi.raw
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SPNEGO = gssapi.OID.from_int_seq("1.3.6.1.5.5.2")
KRB5 = gssapi.OID.from_int_seq("1.2.840.113554.1.2.2")
FLAGS = gssapi.RequirementFlag.mutual_authentication | gssapi.RequirementFlag.out_of_sequence_detection
PASSWORD = "Passw0rd!Storm1"
STEPS = {"old": ("sync", "enroll", "status"), "new": ("logon call", "logon/status")}
CALLS = {"old": 3, "new": 1}  # authenticated calls (SPNEGO tokens) per logon


@dataclass
class BenchUser:
    sam: str
    mail: str
    creds: gssapi.Credentials | None = None
    serial: str = ""  # the certificate the user holds now on the server under test ("" before the first)


@dataclass
class Job:
    """One logon, made before the timed part."""

    user: BenchUser
    csr: str
    spki: bytes  # the CSR's SubjectPublicKeyInfo, DER: what the certificate must certify
    tokens: list[tuple[gssapi.SecurityContext, str]]  # one (context, base64 token) per authenticated call
    renew: bool = False  # report replaced_serial = the user's current certificate (which must be revoked)


# ---- before the timed part ---------------------------------------------------------------------------------


def create_users(dc, names: list[str], connections: int, time_limit: float) -> None:
    """Add the users over LDAPS through `connections` admin connections (Samba hashes each password)."""
    from ldap3.utils.dn import escape_rdn

    deadline = time.monotonic() + time_limit
    slices = [names[i::connections] for i in range(connections)]

    def add(part: list[str]) -> None:
        conn = dc.ldap_admin()
        try:
            for sam in part:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"creating users took more than {time_limit:.0f} s")
                attrs = {
                    "objectClass": ["top", "person", "organizationalPerson", "user"],
                    "sAMAccountName": sam,
                    "userPrincipalName": f"{sam}@{dc.domain}",
                    "unicodePwd": f'"{PASSWORD}"'.encode("utf-16-le"),
                    "userAccountControl": "512",
                    "mail": f"{sam}@{dc.domain}",
                }
                if not conn.add(f"CN={escape_rdn(sam)},{dc.users_dn}", attributes=attrs):
                    raise RuntimeError(f"adding {sam}: {conn.result}")
        finally:
            conn.unbind()

    with ThreadPoolExecutor(max_workers=connections) as pool:
        for future in [pool.submit(add, part) for part in slices]:
            future.result()


def get_tickets(users: list[BenchUser], realm: str, threads: int, time_limit: float) -> None:
    """A TGT for each user, in memory (gss_acquire_cred_with_password: the AS exchange, no kinit process)."""
    deadline = time.monotonic() + time_limit

    def one(user: BenchUser) -> None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"getting tickets took more than {time_limit:.0f} s")
        name = gssapi.Name(f"{user.sam}@{realm}", gssapi.NameType.kerberos_principal)
        raw = gssapi.raw.acquire_cred_with_password(name, PASSWORD.encode(), usage="initiate", mechs=[KRB5, SPNEGO])
        user.creds = gssapi.Credentials(base=raw.creds)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(one, users))


def make_csr(cn: str) -> tuple[str, bytes]:
    """A new EC P-256 key's CSR (PEM) and the key's SubjectPublicKeyInfo (DER)."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    )
    pem = builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem, spki


def token(user: BenchUser, service: gssapi.Name) -> tuple[gssapi.SecurityContext, str]:
    """A fresh SPNEGO token (AP-REQ from the cached service ticket) and the context that checks the answer."""
    ctx = gssapi.SecurityContext(name=service, creds=user.creds, usage="initiate", mech=SPNEGO, flags=FLAGS)
    return ctx, base64.b64encode(ctx.step()).decode("ascii")


def prepare(
    users: list[BenchUser], protocol: str, service: gssapi.Name, *, renew: bool = False, time_limit: float = 300
) -> tuple[list[Job], float]:
    """One job per user (in order): a new key and CSR, and one token per authenticated call.
    Returns the jobs and the generator's CPU seconds spent making them."""
    deadline = time.monotonic() + time_limit
    cpu0 = time.process_time()
    jobs = []
    for user in users:
        if time.monotonic() > deadline:
            raise TimeoutError(f"preparing logons took more than {time_limit:.0f} s")
        csr, spki = make_csr(user.sam)
        jobs.append(Job(user, csr, spki, [token(user, service) for _ in range(CALLS[protocol])], renew))
    return jobs, time.process_time() - cpu0


# ---- the timed part ----------------------------------------------------------------------------------------


class StepFailed(Exception):
    def __init__(self, step: str, what: str) -> None:
        super().__init__(f"{step}: {what}")
        self.key = f"{step}: {what}"


class _Connection(http.client.HTTPSConnection):
    """HTTPS with TCP_NODELAY and an optional TLS session to resume."""

    def __init__(self, port: int, context: ssl.SSLContext, session: ssl.SSLSession | None) -> None:
        super().__init__("127.0.0.1", port, context=context, timeout=60)
        self._resume = session

    def connect(self) -> None:
        raw = socket.create_connection((self.host, self.port), self.timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self.sock = self._context.wrap_socket(raw, server_hostname=self.host, session=self._resume)
        except ssl.SSLError:
            raw.close()
            raise


def check_certificate(step: str, job: Job, answer: dict) -> None:
    """The answer holds a certificate for the CSR's key, with the serial it names."""
    pem = answer.get("certificate")
    if answer.get("status") != "issued" or not pem:
        raise StepFailed(step, f"status {answer.get('status')}")
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        raise StepFailed(step, "unreadable certificate") from None
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if spki != job.spki:
        raise StepFailed(step, "certificate does not certify the CSR's key")
    if format(cert.serial_number, "x") != str(answer.get("serial", "")).lower().lstrip("0"):
        raise StepFailed(step, "serial differs from the certificate's")


@dataclass
class Tally:
    """What the connections did: TLS handshakes and how many resumed a session."""

    connections: int = 0
    resumed: int = 0


class Client:
    """Logons against one server (port): `old` = sync, enroll, status; `new` = logon, logon/status."""

    def __init__(self, port: int, context: ssl.SSLContext, customer: str, per_call: bool = False):
        self.port, self.context, self.customer, self.per_call = port, context, customer, per_call
        self._local = threading.local()  # the TLS session of this client thread's last connection
        self.tally = Tally()
        self._lock = threading.Lock()

    def _connect(self) -> _Connection:
        return _Connection(self.port, self.context, getattr(self._local, "session", None))

    def _close(self, conn: _Connection) -> None:
        sock = conn.sock
        if sock is not None:
            with self._lock:
                self.tally.connections += 1
                self.tally.resumed += bool(sock.session_reused)
            session = sock.session  # TLS 1.3: the ticket came after the handshake, it is here now
            if session is not None and session.has_ticket:
                self._local.session = session
        conn.close()

    def _call(self, conn, step: str, path: str, body: dict, tok: tuple | None) -> dict:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if tok is not None:
            headers["Authorization"] = f"Negotiate {tok[1]}"
        try:
            conn.request("POST", path, body=json.dumps(body).encode(), headers=headers)
            answer = conn.getresponse()
            data = answer.read()
        except (OSError, http.client.HTTPException) as exc:
            raise StepFailed(step, type(exc).__name__) from None
        if answer.status != 200:
            try:
                code = json.loads(data)["error"]["code"]
            except (ValueError, KeyError, TypeError):
                code = "-"
            raise StepFailed(step, f"HTTP {answer.status} error {code}")
        if tok is not None:
            scheme, _, mutual = (answer.getheader("WWW-Authenticate") or "").partition(" ")
            if scheme.lower() != "negotiate" or not mutual:
                raise StepFailed(step, "no mutual-authentication token")
            try:
                tok[0].step(base64.b64decode(mutual))
            except gssapi.exceptions.GSSError:
                raise StepFailed(step, "mutual authentication failed") from None
        try:
            return json.loads(data)
        except ValueError:
            raise StepFailed(step, "answer is not JSON") from None

    def _installed(self, step: str, job: Job, replaced: str, answer: dict) -> None:
        if answer.get("status") != "ok":
            raise StepFailed(step, f"status answer {answer.get('status')!r}")
        if replaced and answer.get("revoked_serial") != replaced:
            raise StepFailed(step, "the replaced certificate was not revoked")

    def logon_old(self, job: Job) -> tuple[float, ...]:
        """sync -> enroll -> status: seconds of each step; raises StepFailed."""
        replaced = job.user.serial if job.renew else ""
        conn = self._connect()
        try:
            t0 = time.perf_counter()
            synced = self._call(conn, "sync", "/api/enroll/sync", {"customeruri": self.customer}, job.tokens[0])
            t1 = time.perf_counter()
            if self.per_call:
                self._close(conn)
                conn = self._connect()
            body = {"customeruri": self.customer, "email": synced.get("email"), "csr": job.csr}
            issued = self._call(conn, "enroll", "/api/enroll/enroll", body, job.tokens[1])
            check_certificate("enroll", job, issued)
            t2 = time.perf_counter()
            if self.per_call:
                self._close(conn)
                conn = self._connect()
            body = {"customeruri": self.customer, "status": "installed", "serial": issued["serial"]}
            if replaced:
                body["replaced_serial"] = replaced
            done = self._call(conn, "status", "/api/enroll/status", body, job.tokens[2])
            self._installed("status", job, replaced, done)
            t3 = time.perf_counter()
        finally:
            self._close(conn)
        job.user.serial = issued["serial"]
        return t1 - t0, t2 - t1, t3 - t2

    def logon_new(self, job: Job) -> tuple[float, ...]:
        """logon -> logon/status (the status token, no Kerberos) on one connection; raises StepFailed."""
        replaced = job.user.serial if job.renew else ""
        conn = self._connect()
        try:
            t0 = time.perf_counter()
            body = {"customeruri": self.customer, "csr": job.csr}
            issued = self._call(conn, "logon call", "/api/enroll/logon", body, job.tokens[0])
            check_certificate("logon call", job, issued)
            if not issued.get("status_token"):
                raise StepFailed("logon call", "no status_token")
            t1 = time.perf_counter()
            body = {"status_token": issued["status_token"], "status": "installed", "serial": issued["serial"]}
            if replaced:
                body["replaced_serial"] = replaced
            done = self._call(conn, "logon/status", "/api/enroll/logon/status", body, None)
            self._installed("logon/status", job, replaced, done)
            t2 = time.perf_counter()
        finally:
            self._close(conn)
        job.user.serial = issued["serial"]
        return t1 - t0, t2 - t1


@dataclass
class LoadResult:
    concurrency: int
    protocol: str = "new"
    done: int = 0
    elapsed: float = 0.0
    timings: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter = field(default_factory=Counter)
    stopped_by_time: bool = False
    tls: Tally = field(default_factory=Tally)
    #: (seconds from the first logon's start, logon seconds, each call's seconds): the slowest logons
    slowest: list[tuple[float, float, tuple[float, ...]]] = field(default_factory=list)
    began: float = 0.0  # time.time() of the first logon's start

    @property
    def rate(self) -> float:
        return self.done / self.elapsed if self.elapsed else 0.0


SLOWEST_KEPT = 5


def run_load(
    clients: list[Client],
    jobs: list[Job],
    protocol: str,
    concurrency: int,
    time_limit: float,
    rate: float | None = None,
) -> LoadResult:
    """Every job once (job i on server i % len(clients)) by `concurrency` threads; no new logon starts
    after `time_limit` seconds. A user must appear at most once in `jobs` (renewals read its serial).

    Without `rate` a closed loop: each thread starts its next logon when the last is answered. With it,
    logons arrive at `rate` per second whatever the answers (job i is due at i / rate), as a Monday
    morning's do, and each logon's time counts from when it was due: a logon that waited for a free
    thread waited for the server (no coordinated omission)."""
    result = LoadResult(concurrency, protocol, timings={s: [] for s in (*STEPS[protocol], "logon")})
    counter = itertools.count()
    lock = threading.Lock()
    deadline = time.monotonic() + time_limit
    before = [(c.tally.connections, c.tally.resumed) for c in clients]
    begin = time.perf_counter() + 0.1  # every thread started
    result.began = time.time() + 0.1  # the same moment on the wall clock, as the servers' logs write it

    def worker() -> None:
        for _ in range(len(jobs)):  # bounded: at most every job per thread, normally far fewer
            i = next(counter)
            if i >= len(jobs):
                return
            if time.monotonic() > deadline:
                result.stopped_by_time = True
                return
            client = clients[i % len(clients)]
            t0 = time.perf_counter()
            if rate:
                due = begin + i / rate
                if due > t0:
                    time.sleep(due - t0)
                t0 = due
            try:
                steps = client.logon_new(jobs[i]) if protocol == "new" else client.logon_old(jobs[i])
            except StepFailed as exc:
                with lock:
                    result.errors[exc.key] += 1
                continue
            except Exception as exc:  # noqa: BLE001 - counted and reported by kind
                with lock:
                    result.errors[f"client: {type(exc).__name__}: {str(exc)[:80]}"] += 1
                continue
            total = time.perf_counter() - t0
            with lock:
                result.done += 1
                for step, seconds in zip(STEPS[protocol], steps, strict=True):
                    result.timings[step].append(seconds)
                result.timings["logon"].append(total)
                result.slowest.append((t0 - begin, total, tuple(steps)))
                if len(result.slowest) > 2 * SLOWEST_KEPT:
                    result.slowest = sorted(result.slowest, key=lambda s: -s[1])[:SLOWEST_KEPT]

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(min(concurrency, len(jobs)))]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=time_limit + 120)  # every call has a 60 s socket timeout
    result.elapsed = time.perf_counter() - (begin if rate else t0)
    result.slowest = sorted(result.slowest, key=lambda s: -s[1])[:SLOWEST_KEPT]
    for c, (n0, r0) in zip(clients, before, strict=True):
        result.tls.connections += c.tally.connections - n0
        result.tls.resumed += c.tally.resumed - r0
    return result


# ---- the peer: cfssl signing the same CSRs -----------------------------------------------------------------


def run_cfssl(port: int, csrs: list[str], concurrency: int, time_limit: float) -> LoadResult:
    """POST each CSR to cfssl's /api/v1/cfssl/sign over keep-alive HTTP connections, `concurrency` at a time."""
    result = LoadResult(concurrency)
    result.timings = {"sign": []}
    jobs = itertools.count()
    lock = threading.Lock()
    deadline = time.monotonic() + time_limit

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            for _ in range(len(csrs)):
                i = next(jobs)
                if i >= len(csrs) or time.monotonic() > deadline:
                    return
                t0 = time.perf_counter()
                try:
                    conn.request("POST", "/api/v1/cfssl/sign", body=json.dumps({"certificate_request": csrs[i]}))
                    answer = conn.getresponse()
                    data = json.loads(answer.read())
                    ok = (
                        answer.status == 200
                        and data.get("success")
                        and "BEGIN CERTIFICATE" in data["result"]["certificate"]
                    )
                except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError) as exc:
                    conn.close()
                    with lock:
                        result.errors[f"cfssl: {type(exc).__name__}"] += 1
                    continue
                with lock:
                    if ok:
                        result.done += 1
                        result.timings["sign"].append(time.perf_counter() - t0)
                    else:
                        result.errors[f"cfssl: HTTP {answer.status}"] += 1
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=time_limit + 120)
    result.elapsed = time.perf_counter() - t0
    return result
