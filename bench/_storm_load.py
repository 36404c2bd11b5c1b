"""The load generator of bench/storm.py: AD users, their Kerberos tickets and CSRs, and the client protocol.

The client is what the agent does at a logon (sync -> enroll -> status, each call with a fresh SPNEGO
token made with python-gssapi, the server's mutual-authentication token checked), written on
http.client with one TLS connection per logon (keep-alive across the three calls) so that the
generator spends as little CPU as possible; `per_call=True` opens one connection per call instead.
"""

from __future__ import annotations

import base64
import http.client
import itertools
import json
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
STEPS = ("sync", "enroll", "status")


@dataclass
class BenchUser:
    sam: str
    mail: str
    creds: gssapi.Credentials | None = None
    csr: str = ""


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


def make_csr(cn: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


# ---- the timed part ----------------------------------------------------------------------------------------


class StepFailed(Exception):
    def __init__(self, step: str, what: str) -> None:
        super().__init__(f"{step}: {what}")
        self.key = f"{step}: {what}"


class Client:
    """One logon: sync, enroll, status over one HTTPS connection (or one per call)."""

    def __init__(self, port: int, context: ssl.SSLContext, service: gssapi.Name, customer: str, per_call: bool):
        self.port, self.context, self.service, self.customer, self.per_call = port, context, service, customer, per_call

    def _connect(self) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection("127.0.0.1", self.port, context=self.context, timeout=60)

    def _call(self, conn: http.client.HTTPSConnection, user: BenchUser, step: str, body: dict) -> dict:
        ctx = gssapi.SecurityContext(name=self.service, creds=user.creds, usage="initiate", mech=SPNEGO, flags=FLAGS)
        token = base64.b64encode(ctx.step()).decode("ascii")
        headers = {
            "Authorization": f"Negotiate {token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        try:
            conn.request("POST", f"/api/enroll/{step}", body=json.dumps(body).encode(), headers=headers)
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
        scheme, _, mutual = (answer.getheader("WWW-Authenticate") or "").partition(" ")
        if scheme.lower() != "negotiate" or not mutual:
            raise StepFailed(step, "no mutual-authentication token")
        try:
            ctx.step(base64.b64decode(mutual))
        except gssapi.exceptions.GSSError:
            raise StepFailed(step, "mutual authentication failed") from None
        return json.loads(data)

    def logon(self, user: BenchUser) -> tuple[float, float, float]:
        """Seconds taken by each step; raises StepFailed."""
        conn = self._connect()
        try:
            t0 = time.perf_counter()
            synced = self._call(conn, user, "sync", {"customeruri": self.customer})
            t1 = time.perf_counter()
            if self.per_call:
                conn.close()
                conn = self._connect()
            body = {"customeruri": self.customer, "email": synced["email"], "csr": user.csr}
            issued = self._call(conn, user, "enroll", body)
            if issued.get("status") != "issued" or not issued.get("certificate"):
                raise StepFailed("enroll", f"status {issued.get('status')}")
            t2 = time.perf_counter()
            if self.per_call:
                conn.close()
                conn = self._connect()
            self._call(
                conn, user, "status", {"customeruri": self.customer, "status": "installed", "serial": issued["serial"]}
            )
            t3 = time.perf_counter()
        finally:
            conn.close()
        return t1 - t0, t2 - t1, t3 - t2


@dataclass
class LoadResult:
    concurrency: int
    done: int = 0
    elapsed: float = 0.0
    timings: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in (*STEPS, "logon")})
    errors: Counter = field(default_factory=Counter)
    stopped_by_time: bool = False

    @property
    def rate(self) -> float:
        return self.done / self.elapsed if self.elapsed else 0.0


def run_load(
    clients: list[Client], users: list[BenchUser], concurrency: int, count: int, time_limit: float
) -> LoadResult:
    """`count` logons (user i % len(users), server i % len(clients)) by `concurrency` threads; no new logon
    starts after `time_limit` seconds."""
    result = LoadResult(concurrency)
    jobs = itertools.count()
    lock = threading.Lock()
    deadline = time.monotonic() + time_limit

    def worker() -> None:
        for _ in range(count):  # bounded: at most `count` logons per thread, normally far fewer
            i = next(jobs)
            if i >= count:
                return
            if time.monotonic() > deadline:
                result.stopped_by_time = True
                return
            t0 = time.perf_counter()
            try:
                steps = clients[i % len(clients)].logon(users[i % len(users)])
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
                for step, seconds in zip(STEPS, steps, strict=True):
                    result.timings[step].append(seconds)
                result.timings["logon"].append(total)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=time_limit + 120)  # every call has a 60 s socket timeout
    result.elapsed = time.perf_counter() - t0
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
