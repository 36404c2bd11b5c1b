"""Complete enrollments (sync -> enroll -> status) against a running server, with real Kerberos and LDAP.

    sudo .venv/bin/python bench/enroll.py [--users 20] [--enrollments 200] [--concurrency 4] [--workers 2]

Starts a test-bed AD DC on 127.0.0.6 and a real server (`serve`: Granian over HTTPS); makes the users, their
tickets and CSRs before the timed part; then runs the enrollments with a bounded number of threads
and prints enrollments/s next to two limits measured in the same run: the in-process SPNEGO accept
rate and the raw signing rate of the issuing CA's key.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gssapi
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from requests_gssapi import HTTPSPNEGOAuth

from autoenroll import pki
from autoenroll.testbed import samba
from autoenroll.testbed.server import SERVER_HOST, start_server

SPNEGO = gssapi.OID.from_int_seq("1.3.6.1.5.5.2")
SERVICE = gssapi.Name(f"HTTP@{SERVER_HOST}", gssapi.NameType.hostbased_service)
TIME_LIMIT = 300  # seconds: the timed part stops by itself


def csr_pem(cn: str) -> str:
    key = pki.generate_private_key("ec-p256")
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
    return csr.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


class User:
    def __init__(self, sam: str, ccache: str, base: str, root_ca: Path) -> None:
        self.sam = sam
        self.creds = gssapi.Credentials(usage="initiate", store={"ccache": ccache})
        self.session = requests.Session()
        self.verify = str(root_ca)  # per call: REQUESTS_CA_BUNDLE in the environment would beat session.verify
        self.session.auth = HTTPSPNEGOAuth(target_name=SERVICE, creds=self.creds, opportunistic_auth=True)
        self.base = base
        self.lock = threading.Lock()

    def call(self, step: str, body: dict) -> dict:
        answer = self.session.post(f"{self.base}/api/enroll/{step}", json=body, timeout=60, verify=self.verify)
        if answer.status_code != 200:
            raise RuntimeError(f"{self.sam} {step}: {answer.status_code} {answer.text[:200]}")
        return answer.json()


def enroll_once(user: User, csr: str, timings: dict[str, list[float]]) -> None:
    with user.lock:  # one logon at a time per user, as in real life
        t0 = time.perf_counter()
        synced = user.call("sync", {"customeruri": "bench"})
        t1 = time.perf_counter()
        issued = user.call("enroll", {"customeruri": "bench", "email": synced["email"], "csr": csr})
        t2 = time.perf_counter()
        user.call("status", {"customeruri": "bench", "status": "installed", "serial": issued["serial"]})
        t3 = time.perf_counter()
    timings["sync"].append(t1 - t0)
    timings["enroll"].append(t2 - t1)
    timings["status"].append(t3 - t2)
    timings["total"].append(t3 - t0)


def spnego_accept_rate(ccache: str, keytab: Path, n: int = 300) -> float:
    acceptor = gssapi.Credentials(usage="accept", store={"keytab": str(keytab)})
    initiator = gssapi.Credentials(usage="initiate", store={"ccache": ccache})
    t0 = time.perf_counter()
    for _ in range(n):
        ctx = gssapi.SecurityContext(name=SERVICE, creds=initiator, usage="initiate", mech=SPNEGO)
        gssapi.SecurityContext(creds=acceptor, usage="accept").step(ctx.step())
    return n / (time.perf_counter() - t0)


def signing_rate(data_dir: Path, passphrase: bytes, n: int = 300) -> float:
    ca = data_dir / "ca"
    backend = pki.FileKeyBackend(ca / "issuing-ca.pem", ca / "issuing-ca.key", passphrase)
    urls = pki.PublicationURLs.for_ca(f"http://{SERVER_HOST}", "bench")
    key = pki.generate_private_key("ec-p256").public_key()
    pki.issue_smime_certificate(backend, key, "user1@test.com", urls)  # decrypts the key once
    t0 = time.perf_counter()
    for _ in range(n):
        pki.issue_smime_certificate(backend, key, "user1@test.com", urls)
    return n / (time.perf_counter() - t0)


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000 if len(values) >= 2 else values[0] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--enrollments", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--ip", default="127.0.0.6")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="autoenroll-bench-") as tmp:
        work = Path(tmp)
        dc = samba.start(work / "dc", ip=args.ip)
        os.environ["KRB5_CONFIG"] = str(dc.krb5_conf)  # this process is the users' machine: find the KDC
        server = None
        try:
            server = start_server(work / "server", dc, customer="bench", workers=args.workers)
            print(f"setup: DC on {dc.ip}, server {server.url} with {args.workers} workers")
            users = []
            for i in range(args.users):
                sam = f"bench{i:04d}"
                dc.add_user(sam, "Passw0rd!Bench1", mail=f"{sam}@{samba.DOMAIN}")
                users.append(User(sam, dc.kinit(sam), f"https://127.0.0.1:{server.port}", server.root_ca))
            csrs = [csr_pem(users[i % len(users)].sam) for i in range(args.enrollments)]
            for user in users:  # service tickets fetched before the timed part
                user.call("sync", {"customeruri": "bench"})

            timings: dict[str, list[float]] = {"sync": [], "enroll": [], "status": [], "total": []}
            errors: list[str] = []
            deadline = time.monotonic() + TIME_LIMIT

            def job(i: int) -> None:
                if time.monotonic() > deadline:
                    return
                try:
                    enroll_once(users[i % len(users)], csrs[i], timings)
                except Exception as exc:  # noqa: BLE001 - counted and reported
                    errors.append(str(exc))

            t0 = time.perf_counter()
            with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
                list(pool.map(job, range(args.enrollments)))
            elapsed = time.perf_counter() - t0
            done = len(timings["total"])
            rate = done / elapsed

            accept = spnego_accept_rate(dc.kinit("user1"), dc.keytab)
            sign = signing_rate(server.data_dir, (server.workdir / "ca-passphrase").read_bytes().strip())
            print(f"\n{done} enrollments ({len(errors)} errors) in {elapsed:.2f} s at concurrency {args.concurrency}")
            for step in ("sync", "enroll", "status", "total"):
                v = timings[step]
                if v:
                    print(f"  {step:7s} p50 {pct(v, 50):7.1f} ms   p95 {pct(v, 95):7.1f} ms")
            print(f"\nenrollments/s                      {rate:8.1f}")
            print(f"in-process SPNEGO accepts/s        {accept:8.1f}   ours/limit {rate / accept:.3f}")
            print(f"raw S/MIME signatures/s (issuing)  {sign:8.1f}   ours/limit {rate / sign:.3f}")
            for e in errors[:5]:
                print("error:", e)
        finally:
            if server is not None:
                server.stop()
            dc.stop()


if __name__ == "__main__":
    main()
