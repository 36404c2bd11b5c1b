"""Benchmark: CRL generation time and OCSP responses/s with N revoked certificates.

Baselines measured in the same run, on the same certificates and the same machine:
  * CRL:  `openssl ca -gencrl` over an OpenSSL index.txt holding the same revocations;
  * OCSP: `openssl ocsp -index` as a responder for the same certificates (same responder key type,
    same worker count via -multi), driven by the same load generator with the same requests.

Everything runs on loopback. `openssl ocsp` can only bind every interface, so when run as root
the benchmark re-executes itself in a private network namespace whose only interface is `lo`
(`unshare --net`); otherwise it says so (the responders are stopped after their load phase).
Bounded in count (--revoked <= 1,000,000, --requests <= 50,000) and time (--time-limit per phase). The
first 50,000 certificates are signed for real; past that, rows are recorded (bulk INSERTs) with random
serials and no certificate body: a CRL or an OCSP answer reads only serial, status, time and reason.

    .venv/bin/python bench/revocation.py                # 10,000 revoked, 4,000 OCSP requests
    .venv/bin/python bench/revocation.py --revoked 1000 --requests 1000
    .venv/bin/python bench/revocation.py --revoked 1000000 --crl-runs 1 --json revocation.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import http.client
import json
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _storm_sys import self_cpu, tree_cpu  # noqa: E402

VENV_BIN = Path(sys.executable).parent
PASSPHRASE = "bench-passphrase"
REASONS = ["superseded", "key_compromise", "affiliation_changed", "cessation_of_operation", "unspecified"]
OPENSSL_REASONS = {
    "superseded": "superseded",
    "key_compromise": "keyCompromise",
    "affiliation_changed": "affiliationChanged",
    "cessation_of_operation": "cessationOfOperation",
    "unspecified": "unspecified",
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--revoked", type=int, default=10_000, help="revoked certificates (max 1,000,000)")
    p.add_argument("--valid", type=int, default=1_000, help="valid certificates next to them (max 50,000)")
    p.add_argument("--requests", type=int, default=4_000, help="OCSP requests per responder (max 50,000)")
    p.add_argument("--concurrency", type=int, default=8, help="client threads")
    p.add_argument(
        "--workers",
        type=int,
        help="responder processes (server workers / openssl -multi; default: one per --server-cpus CPU, else 2)",
    )
    p.add_argument("--crl-runs", type=int, default=3)
    p.add_argument(
        "--partitions", type=int, default=16, help="also time one CRL partition, certificates spread over N (1: no)"
    )
    p.add_argument("--time-limit", type=float, default=120.0, help="seconds allowed per load phase")
    p.add_argument("--no-ocsp", action="store_true", help="the CRL only (no responders, no load)")
    p.add_argument(
        "--generator",
        choices=("wrk", "python"),
        default="wrk" if shutil.which("wrk") else "python",
        help="OCSP load generator: wrk (C, answers checked by ocsp_check.lua; the default when installed) or "
        "Python threads (answers parsed with cryptography)",
    )
    p.add_argument("--wrk-seconds", type=float, default=8.0, help="length of each wrk load phase")
    p.add_argument(
        "--server-cpus", default="", help="pin both responders to these CPUs (taskset -c syntax), the load to the rest"
    )
    p.add_argument(
        "--answers-kept",
        type=int,
        help="AUTOENROLL_OCSP_ANSWERS_KEPT of the server (default: its default; 0: every request reads the records)",
    )
    p.add_argument("--json", type=Path, help="also write the results to this file as JSON")
    p.add_argument("--no-netns", action="store_true", help="do not re-execute in a private network namespace")
    p.add_argument("--in-netns", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for name, top in (("revoked", 1_000_000), ("valid", 50_000), ("requests", 50_000), ("concurrency", 64)):
        if not 1 <= getattr(args, name) <= top:
            p.error(f"--{name} must be between 1 and {top}")
    if args.workers is None:  # one process per pinned CPU: two on one core fight over it (Python's, not C's)
        args.workers = len(_cpu_set(args.server_cpus)) if args.server_cpus else 2
    return args


def reexec_in_netns(argv: list[str]) -> None:
    """Root only: run this script again where `lo` is the only network interface."""
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        return
    script = f"ip link set lo up && exec {sys.executable} {Path(__file__).resolve()} --in-netns " + " ".join(argv)
    result = subprocess.run(["unshare", "--net", "sh", "-c", script], check=False)
    raise SystemExit(result.returncode)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_answering(
    port: int, url_path: str, der: bytes, proc: subprocess.Popen, timeout: float = 60, log: Path | None = None
) -> None:
    """Until the responder answers a whole OCSP request. Not a bare connect: a connection closed without a
    request leaves a child of `openssl ocsp -multi` (OpenSSL 3.0) spinning on a core for good."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log else ""
            raise SystemExit(f"{proc.args} exited early with {proc.returncode}\n{tail}")
        with socket.socket() as s:
            listening = s.connect_ex(("127.0.0.1", port)) == 0
            if listening:
                s.sendall(
                    f"POST {url_path} HTTP/1.0\r\nContent-Type: application/ocsp-request\r\n"
                    f"Content-Length: {len(der)}\r\n\r\n".encode()
                    + der
                )
                answer = b""
                while chunk := s.recv(65536):  # to the end: a connection cut short leaves a child spinning too
                    answer += chunk
                if answer.startswith(b"HTTP/1."):
                    return
        time.sleep(0.05)
    raise SystemExit(f"nothing answers OCSP on 127.0.0.1:{port}")


def stop(proc: subprocess.Popen) -> None:
    """Stop a server that leads its own process group, and every process of the group (by its id):
    `openssl ocsp -multi` leaves its children running when only the parent is terminated."""
    import signal

    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        time.sleep(0.2)  # let the group's other members act on the signal
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever of the group is still there
        except ProcessLookupError:
            pass
        break


# --- set-up ----------------------------------------------------------------------------------------


def setup_server(workdir: Path, env: dict[str, str]):
    subprocess.run([str(VENV_BIN / "autoenroll-server"), "init"], env=env, check=True, capture_output=True)
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "autoenroll.server.settings"
    import django

    django.setup()


SIGNED_AT_MOST = 50_000


def populate(revoked: int, valid: int, partitions: int):
    """Record `revoked` revoked and `valid` valid certificates of the issuing CA: the first SIGNED_AT_MOST
    signed for real (ORM), the rest as rows only (random serials, bulk INSERTs of 10,000); certificate i in
    CRL partition i mod `partitions`; each revoked one with its CRL entry, as `authority.revoke_rows` stores it."""
    from cryptography.hazmat.primitives import hashes
    from django.conf import settings
    from django.db import connection, transaction
    from django.db.models import F
    from django.utils import timezone

    from autoenroll import pki
    from autoenroll.server.certificates import authority
    from autoenroll.server.certificates.models import Certificate, CertificateAuthority

    config = settings.CONFIG
    ca = authority.issuing_ca()
    backend = authority.backend_for(ca, config.ca_passphrase_bytes())
    urls = pki.PublicationURLs.for_ca(config.publication_url, ca.name)
    public_key = pki.generate_private_key("ec-p256").public_key()
    now = timezone.now()
    total = revoked + valid
    rows, entries = [], []
    started = time.perf_counter()
    for i in range(min(total, SIGNED_AT_MOST)):
        mail = f"user{i}@bench.test"
        cert = backend.sign(pki.profiles.smime_builder(backend.certificate, public_key, mail, urls))
        is_revoked = i < revoked
        reason = REASONS[i % len(REASONS)] if is_revoked else ""
        revoked_at = now - dt.timedelta(seconds=i) if is_revoked else None
        rows.append(
            Certificate(
                ca=ca,
                serial=authority.serial_hex(cert.serial_number),
                profile=Certificate.Profile.SMIME,
                subject=cert.subject.rfc4514_string(),
                issuer=cert.issuer.rfc4514_string(),
                mail=mail,
                not_before=cert.not_valid_before_utc,
                not_after=cert.not_valid_after_utc,
                fingerprint_sha256=cert.fingerprint(hashes.SHA256()).hex(),
                pem="",  # not needed by revocation; keeps the database small
                status=Certificate.Status.REVOKED if is_revoked else Certificate.Status.ISSUED,
                revoked_at=revoked_at,
                revocation_reason=reason,
                revoked_by="bench" if is_revoked else "",
                crl_partition=i % partitions if partitions > 1 else None,
                crl_entry=pki.crl_entry(cert.serial_number, revoked_at, reason) if is_revoked else None,
            )
        )
        entries.append((cert.serial_number, cert.not_valid_after_utc, revoked_at, reason))
    signed = time.perf_counter() - started
    adapt = connection.ops.adapt_datetimefield_value
    not_before, not_after = now, now + dt.timedelta(days=365)
    with transaction.atomic():
        Certificate.objects.bulk_create(rows, batch_size=1000)
        insert = (
            f"INSERT INTO {Certificate._meta.db_table} (ca_id, serial, profile, subject, issuer, mail, not_before, "
            "not_after, fingerprint_sha256, public_key_sha256, pem, csr_pem, status, revoked_at, revocation_reason, "
            "revoked_by, created, crl_partition, crl_entry) VALUES (%s, %s, 'smime', 'CN=bench', 'CN=bench', '', "
            "%s, %s, %s, '', '', '', %s, %s, %s, %s, %s, %s, %s)"
        )
        with connection.cursor() as cursor:
            for first in range(len(rows), total, 10_000):
                batch = []
                for i in range(first, min(first + 10_000, total)):
                    serial = secrets.randbits(159) | 1 << 150
                    is_revoked = i < revoked
                    reason = REASONS[i % len(REASONS)] if is_revoked else ""
                    revoked_at = now - dt.timedelta(seconds=i) if is_revoked else None
                    batch.append((
                        ca.pk, format(serial, "x"), adapt(not_before), adapt(not_after),
                        hashlib.sha256(serial.to_bytes(20, "big")).hexdigest(),
                        "revoked" if is_revoked else "issued", adapt(revoked_at) if is_revoked else None,
                        reason, "bench" if is_revoked else "", adapt(now), i % partitions if partitions > 1 else None,
                        pki.crl_entry(serial, revoked_at, reason) if is_revoked else None,
                    ))  # fmt: skip
                    entries.append((serial, not_after, revoked_at, reason))
                cursor.executemany(insert, batch)
        CertificateAuthority.objects.filter(pk=ca.pk).update(revocation_generation=F("revocation_generation") + revoked)
    took = time.perf_counter() - started
    print(f"recorded {total:,} certificates in {took:.1f} s ({len(rows):,} signed, signing {signed:.1f} s)")
    return ca, backend, entries


def openssl_time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%y%m%d%H%M%SZ")


def openssl_serial(serial: int) -> str:
    width = max(1, (serial.bit_length() + 7) // 8) * 2
    return f"{serial:0{width}X}"


def write_openssl_ca(workdir: Path, backend, entries) -> Path:
    """index.txt, config, CA certificate and (unencrypted, in the private temp dir) key for OpenSSL."""
    from cryptography.hazmat.primitives import serialization

    d = workdir / "openssl"
    d.mkdir(mode=0o700)
    lines = []
    for serial, not_after, revoked_at, reason in entries:
        if revoked_at is None:
            lines.append(f"V\t{openssl_time(not_after)}\t\t{openssl_serial(serial)}\tunknown\t/CN=bench")
        else:
            when = f"{openssl_time(revoked_at)},{OPENSSL_REASONS[reason]}"
            lines.append(f"R\t{openssl_time(not_after)}\t{when}\t{openssl_serial(serial)}\tunknown\t/CN=bench")
    (d / "index.txt").write_text("\n".join(lines) + "\n")
    (d / "index.txt.attr").write_text("unique_subject = no\n")
    (d / "crlnumber").write_text("01\n")
    (d / "ca.pem").write_bytes(backend.certificate.public_bytes(serialization.Encoding.PEM))
    key = backend._private_key()  # the bench only: OpenSSL needs the key without our KDF in its timing
    (d / "ca.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (d / "ca.cnf").write_text(
        "[ ca ]\ndefault_ca = bench\n[ bench ]\n"
        f"database = {d / 'index.txt'}\ncrlnumber = {d / 'crlnumber'}\n"
        f"certificate = {d / 'ca.pem'}\nprivate_key = {d / 'ca.key'}\n"
        "default_md = sha256\ndefault_crl_days = 7\ncrl_extensions = crl_ext\nunique_subject = no\n"
        "[ crl_ext ]\nauthorityKeyIdentifier = keyid:always\n"
    )
    return d


# --- CRL -------------------------------------------------------------------------------------------


def _measured(cmd: list, env: dict | None = None) -> dict:
    """Run `cmd` under GNU time: wall seconds, CPU seconds and peak RSS (MB) of that command alone. (Our own
    wait4 would count the RSS this Python process had when it forked, whatever the command uses.)"""
    with tempfile.NamedTemporaryFile("r") as out:
        done = subprocess.run(
            ["/usr/bin/time", "-o", out.name, "-f", "%e %U %S %M", *map(str, cmd)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=600,
        )  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"{cmd[0]} failed: {done.stderr[-2000:]}")
        wall, user, system, rss_kb = out.read().split()[-4:]
    return {"s": float(wall), "cpu_s": float(user) + float(system), "rss_mb": int(rss_kb) / 1024}


def bench_crl(ca, runs: int, osl: Path, expected: int, env: dict) -> tuple[dict, dict, dict]:
    """`publication.publish_crl` in this process (read the revoked set, encode, sign, self-check, store) against
    `openssl ca -gencrl` (a process: its start is in its figure, ≈ 10 ms), the median run of each by wall time;
    and once `autoenroll-server crl --ca NAME`, the command an admin or cron runs, for its peak memory."""
    from cryptography import x509

    from autoenroll.server.certificates import publication

    ours = []
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        row = publication.publish_crl(ca)
        ours.append({"s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu})
        assert row.entries == expected, (row.entries, expected)
    assert len(x509.load_der_x509_crl(bytes(row.der))) == expected
    command = _measured([str(VENV_BIN / "autoenroll-server"), "crl", "--ca", ca.name], env)
    theirs = []
    for i in range(runs):
        theirs.append(_measured(["openssl", "ca", "-gencrl", "-config", osl / "ca.cnf", "-out", osl / f"crl{i}.pem"]))
        assert len(x509.load_pem_x509_crl((osl / f"crl{i}.pem").read_bytes())) == expected
    print(f"CRL with {expected:,} entries: {len(bytes(row.der)):,} bytes, number {row.number}")
    return _median(ours), _median(theirs), command


def _median(runs: list[dict]) -> dict:
    return sorted(runs, key=lambda r: r["s"])[len(runs) // 2]


def bench_crl_partition(ca, runs: int, partitions: int, revoked: int) -> dict:
    """Partition 0 of `partitions` (what a revocation in it makes the watcher sign), median of `runs`."""
    from autoenroll.server.certificates import publication

    timed = []
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        row = publication.publish_crl(ca, partition=0)
        timed.append({"s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu})
    expected = len(range(0, revoked, partitions))
    assert row.entries == expected, (row.entries, expected)
    print(f"CRL partition 0 of {partitions}: {row.entries:,} entries, {len(bytes(row.der)):,} bytes")
    return {**_median(timed), "entries": row.entries, "bytes": len(bytes(row.der)), "partitions": partitions}


# --- OCSP ------------------------------------------------------------------------------------------


def build_requests(ca_cert, entries, count: int, seed: int = 6):
    """A fixed mix: 50 % revoked, 40 % good, 10 % unknown serials; no nonce (like most mail clients)."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509 import ocsp

    from autoenroll.pki.ocsp import _digest, _public_key_bits

    rng = random.Random(seed)
    name_hash = _digest(hashes.SHA1(), ca_cert.subject.public_bytes())  # noqa: S303
    key_hash = _digest(hashes.SHA1(), _public_key_bits(ca_cert.public_key()))  # noqa: S303
    revoked = [e for e in entries if e[2] is not None]
    good = [e for e in entries if e[2] is None]
    requests = []
    for _ in range(count):
        pick = rng.random()
        if pick < 0.5:
            serial, expected = rng.choice(revoked)[0], ocsp.OCSPCertStatus.REVOKED
        elif pick < 0.9:
            serial, expected = rng.choice(good)[0], ocsp.OCSPCertStatus.GOOD
        else:
            serial, expected = rng.getrandbits(150) | 1 << 150, ocsp.OCSPCertStatus.UNKNOWN
        der = (
            ocsp.OCSPRequestBuilder()
            .add_certificate_by_hash(name_hash, key_hash, serial, hashes.SHA1())  # noqa: S303
            .build()
            .public_bytes(serialization.Encoding.DER)
        )
        requests.append((der, expected))
    return requests


def run_load(port: int, path: str, requests, concurrency: int, time_limit: float, server_pid: int = 0) -> dict:
    """POST every request once over fresh connections from `concurrency` threads; check every answer. With
    `server_pid`, the CPU its process tree and this generator spent per answer (rates move with the machine)."""
    from cryptography.x509 import ocsp

    lock = threading.Lock()
    queue = list(enumerate(requests))
    latencies: list[float] = []
    wrong: list[str] = []
    deadline = time.monotonic() + time_limit

    def worker():
        while time.monotonic() < deadline:
            with lock:
                if not queue:
                    return
                _, (der, expected) = queue.pop()
            started = time.perf_counter()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                conn.request("POST", path, body=der, headers={"Content-Type": "application/ocsp-request"})
                body = conn.getresponse().read()
            finally:
                conn.close()
            elapsed = time.perf_counter() - started
            status = ocsp.load_der_ocsp_response(body)
            got = status.certificate_status if status.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL else None
            with lock:
                latencies.append(elapsed)
                if got != expected:
                    wrong.append(f"{expected} -> {got or status.response_status}")

    started = time.perf_counter()
    server_cpu, own_cpu = (tree_cpu([server_pid]) if server_pid else 0.0), self_cpu()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=time_limit + 30)
    total = time.perf_counter() - started
    server_cpu, own_cpu = (tree_cpu([server_pid]) if server_pid else 0.0) - server_cpu, self_cpu() - own_cpu
    latencies.sort()
    done = max(1, len(latencies))
    return {
        "server_cpu_ms": server_cpu * 1000 / done if server_pid else None,
        "generator_cpu_ms": own_cpu * 1000 / done,
        "done": len(latencies),
        "rps": len(latencies) / total,
        "p50": latencies[len(latencies) // 2] * 1000 if latencies else float("nan"),
        "p99": latencies[int(len(latencies) * 0.99) - 1] * 1000 if latencies else float("nan"),
        "wrong": wrong,
    }


def _cpu_set(spec: str) -> set[int]:
    """CPUs in taskset -c syntax: 0 or 0,2 or 0-1."""
    cpus = set()
    for part in spec.split(","):
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def _der_integer_content(value: int) -> bytes:
    return value.to_bytes(value.bit_length() // 8 + 1, "big")  # a leading 0 when the high bit is set


def write_wrk_data(path: Path, requests, url_path: str) -> None:
    """The Lua data `ocsp_check.lua` reads: the requests, the status expected per serial, the issuer key hash."""
    from cryptography.x509 import ocsp

    def lua(data: bytes) -> str:
        return '"' + "".join(f"\\{b:03d}" for b in data) + '"'

    names = {ocsp.OCSPCertStatus.GOOD: "good", ocsp.OCSPCertStatus.REVOKED: "revoked"}
    key_hash = ocsp.load_der_ocsp_request(requests[0][0]).issuer_key_hash  # one issuer for all (build_requests)
    key_hash_tlv = lua(b"\x04\x14" + key_hash)  # OCTET STRING of 20 octets: the CertID's issuerKeyHash
    lines = [f"path = {lua(url_path.encode())}", f"key_hash_tlv = {key_hash_tlv}"]
    lines.append("requests = {" + ",\n".join(lua(der) for der, _ in requests) + "}")
    expected = {}
    for der, status in requests:
        serial = ocsp.load_der_ocsp_request(der).serial_number
        expected[_der_integer_content(serial).hex()] = names.get(status, "unknown")
    lines.append("expected = {" + ",\n".join(f'["{k}"] = "{v}"' for k, v in expected.items()) + "}")
    path.write_text("\n".join(lines) + "\n")


def run_load_wrk(
    port: int, url_path: str, concurrency: int, seconds: float, server_pid: int, data: Path, cpus: str
) -> dict:
    """The same requests, in turn, from wrk for `seconds` (C, so that the generator is not the limit;
    `ocsp_check.lua` checks every answer): one thread, `concurrency` connections, one connection per request."""
    cmd = ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--timeout", "10s"]
    cmd += ["-s", str(Path(__file__).with_name("ocsp_check.lua")), f"http://127.0.0.1:{port}{url_path}"]
    if cpus:
        cmd = ["taskset", "-c", cpus, *cmd]
    before = tree_cpu([server_pid])
    proc = subprocess.Popen(cmd, env=os.environ | {"OCSP_BENCH_DATA": str(data)}, stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _, _, usage = os.wait4(proc.pid, 0)
    server_cpu = tree_cpu([server_pid]) - before
    result = next((line for line in out.splitlines() if line.startswith("RESULT ")), None)
    if result is None:
        raise RuntimeError(f"wrk printed no result (exit {proc.returncode}):\n{out}")
    fields = dict(item.split("=") for item in result.split()[1:])
    completed = max(1, int(fields["completed"]))
    first_wrong = [line for line in out.splitlines() if line.startswith("FIRST_WRONG")]
    wrong = (first_wrong or ["wrong"]) * int(fields["wrong"])
    if int(fields["checked"]) < 100 or int(fields["errors"]):
        wrong.append(f"{fields['checked']} answers, {fields['errors']} errors in {seconds:.0f} s: {out[-800:]}")
    return {
        "generator": "wrk",
        "server_cpu_ms": server_cpu * 1000 / completed,
        "generator_cpu_ms": (usage.ru_utime + usage.ru_stime) * 1000 / completed,
        "done": int(fields["checked"]),
        "rps": completed / float(fields["seconds"]),
        "p50": int(fields["p50_us"]) / 1000,
        "p99": int(fields["p99_us"]) / 1000,
        "errors": int(fields["errors"]),
        "wrong": wrong,
    }


def bench_ocsp(args, workdir: Path, env: dict, ca, backend, entries, osl: Path, netns: bool):
    from cryptography.hazmat.primitives import serialization

    from autoenroll import pki
    from autoenroll.server.certificates import publication

    requests = build_requests(backend.certificate, entries, args.requests)
    pin, load_cpus = [], ""
    if args.server_cpus:
        server_cpus = _cpu_set(args.server_cpus)
        pin = ["taskset", "-c", args.server_cpus]
        load_cpus = ",".join(str(c) for c in sorted(set(range(os.cpu_count() or 1)) - server_cpus))
        os.sched_setaffinity(0, {int(c) for c in load_cpus.split(",")})  # the Python generator, and openssl's parent

    def load(port: int, url_path: str, server_pid: int) -> dict:
        if args.generator == "python":
            return run_load(port, url_path, requests, args.concurrency, args.time_limit, server_pid)
        data = workdir / f"wrk-{port}.lua"
        write_wrk_data(data, requests, url_path)
        return run_load_wrk(port, url_path, args.concurrency, args.wrk_seconds, server_pid, data, load_cpus)

    # What the watcher of `serve` does over its first rounds: sign every certificate's answer ahead.
    started = time.perf_counter()
    presigned = publication.presign_ocsp(round_time=dt.timedelta(hours=1))
    print(f"{presigned:,} OCSP responses signed ahead in {time.perf_counter() - started:.1f} s")

    # ours: the publication listener of `autoenroll-server serve`
    kept = {} if args.answers_kept is None else {"AUTOENROLL_OCSP_ANSWERS_KEPT": str(args.answers_kept)}
    port = free_port()
    log = open(workdir / "serve.log", "wb")  # noqa: SIM115
    server = subprocess.Popen(
        [
            *pin,
            str(VENV_BIN / "autoenroll-server"),
            "serve",
            "--publication-only",
            "--publication-listen",
            f"127.0.0.1:{port}",
            "--workers",
            str(args.workers),
        ],
        env=env | {"AUTOENROLL_LOG_LEVEL": "WARNING"} | kept,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_answering(port, f"/ocsp/{ca.name}", requests[0][0], server, log=workdir / "serve.log")
        run_load(port, f"/ocsp/{ca.name}", requests[:20], 2, 60)  # warm-up: responder certificate, key per worker
        ours = load(port, f"/ocsp/{ca.name}", server.pid)
    finally:
        stop(server)
        log.close()

    # theirs: openssl ocsp -index, same CA, an EC P-256 delegated responder like ours
    key = pki.generate_private_key("ec-p256")
    rcert = pki.issue_ocsp_responder_certificate(backend, key.public_key())
    (osl / "responder.pem").write_bytes(rcert.public_bytes(serialization.Encoding.PEM))
    (osl / "responder.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    port = free_port()
    cmd = [
        *pin,
        "openssl",
        "ocsp",
        "-index",
        osl / "index.txt",
        "-port",
        str(port),
        "-rsigner",
        osl / "responder.pem",
        "-rkey",
        osl / "responder.key",
        "-CA",
        osl / "ca.pem",
        "-ndays",
        "1",
        "-ignore_err",
    ]
    # Two at least: with -multi 1, OpenSSL 3.0's responder answered wrk's 50 connections not once.
    cmd += ["-multi", str(max(2, args.workers))]
    if not netns:
        print("note: not in a private network namespace; openssl ocsp listens on all interfaces for this phase")
    osl_log = open(workdir / "openssl-ocsp.log", "wb")  # noqa: SIM115
    # With -multi, openssl makes itself a process group leader (setpgid, which fails in a new session).
    osl_proc = subprocess.Popen(cmd, stdout=osl_log, stderr=subprocess.STDOUT)
    try:
        wait_answering(port, "/", requests[0][0], osl_proc, log=workdir / "openssl-ocsp.log")
        run_load(port, "/", requests[:20], 2, 60)
        theirs = load(port, "/", osl_proc.pid)
    finally:
        stop(osl_proc)
        osl_log.close()
    return ours, theirs


def main(argv=None) -> None:
    raw = sys.argv[1:] if argv is None else argv
    args = parse_args(raw)
    if not args.in_netns and not args.no_netns:
        reexec_in_netns([a for a in raw if a != "--in-netns"])
    netns = args.in_netns
    print(
        f"revocation benchmark: {args.revoked:,} revoked + {args.valid:,} valid certificates, "
        f"{args.requests:,} OCSP requests, {args.concurrency} client threads, {args.workers} responder processes, "
        f"{os.cpu_count()} CPUs, loopback{' (private network namespace)' if netns else ''}"
        + ("" if args.answers_kept is None else f", {args.answers_kept:,} OCSP answers kept per worker")
    )
    with tempfile.TemporaryDirectory(prefix="autoenroll-bench-") as tmp:
        workdir = Path(tmp)
        os.chmod(workdir, 0o700)
        env = dict(os.environ)
        env.pop("DJANGO_SETTINGS_MODULE", None)
        env.update(
            AUTOENROLL_DATA_DIR=str(workdir / "data"),
            AUTOENROLL_CA_PASSPHRASE=PASSPHRASE,
            AUTOENROLL_SECRET_KEY="bench-" + "x" * 50,
            AUTOENROLL_PUBLICATION_URL="http://127.0.0.1:8080",
            AUTOENROLL_LOG_LEVEL="WARNING",
        )
        setup_server(workdir, env)
        ca, backend, entries = populate(args.revoked, args.valid, args.partitions)
        osl = write_openssl_ca(workdir, backend, entries)
        crl_ours, crl_theirs, crl_command = bench_crl(ca, args.crl_runs, osl, args.revoked, env)
        partition = None
        if args.partitions > 1:
            partition = bench_crl_partition(ca, args.crl_runs, args.partitions, args.revoked)
        ours = theirs = None
        if not args.no_ocsp:
            ours, theirs = bench_ocsp(args, workdir, env, ca, backend, entries, osl, netns)

    print()
    print(f"{'':34} {'autoenroll':>12} {'openssl':>12} {'ratio':>8}")
    print(f"{'CRL generation, median (s)':34} {crl_ours['s']:12.3f} {crl_theirs['s']:12.3f} "
          f"{crl_ours['s'] / crl_theirs['s']:7.2f}x")  # fmt: skip
    print(f"{'CRL generation, CPU (s)':34} {crl_ours['cpu_s']:12.3f} {crl_theirs['cpu_s']:12.3f}")
    print(f"{'CRL command: wall s / peak RSS MB':34} {crl_command['s']:6.2f} {crl_command['rss_mb']:5.0f} "
          f"{crl_theirs['s']:6.2f} {crl_theirs['rss_mb']:5.0f}")  # fmt: skip
    if partition is not None:
        label = f"CRL partition 1/{partition['partitions']}, median (s)"
        print(f"{label:34} {partition['s']:12.3f} {'':>12} {partition['s'] / crl_theirs['s']:7.2f}x")
    if ours is not None:
        print(f"{'OCSP responses/s':34} {ours['rps']:12.0f} {theirs['rps']:12.0f} {ours['rps'] / theirs['rps']:7.2f}x")
        print(f"{'OCSP latency p50 (ms)':34} {ours['p50']:12.1f} {theirs['p50']:12.1f}")
        print(f"{'OCSP latency p99 (ms)':34} {ours['p99']:12.1f} {theirs['p99']:12.1f}")
        print(f"{'OCSP server CPU per answer (ms)':34} {ours['server_cpu_ms']:12.3f} {theirs['server_cpu_ms']:12.3f} "
              f"{ours['server_cpu_ms'] / theirs['server_cpu_ms']:7.2f}x")  # fmt: skip
        print(f"{'OCSP generator CPU per answer (ms)':34} {ours['generator_cpu_ms']:12.3f} "
              f"{theirs['generator_cpu_ms']:12.3f}")  # fmt: skip
        checked = [f"{r['done']:,}/{len(r['wrong'])}" for r in (ours, theirs)]
        print(f"{'OCSP answers checked/wrong':34} {checked[0]:>12} {checked[1]:>12}")
    print("(CRL: ours publish_crl in-process (read, encode, sign, check, store), theirs the openssl process; ratio")
    print(" < 1 is faster. The command line adds ours as `autoenroll-server crl`, Python and Django's start included.")
    print(" OCSP: ratio > 1 means more responses/s than openssl ocsp -index.)")
    if args.json:
        args.json.write_text(json.dumps({
            "revoked": args.revoked, "valid": args.valid, "requests": args.requests,
            "concurrency": args.concurrency, "workers": args.workers, "cpus": os.cpu_count(),
            "generator": args.generator, "server_cpus": args.server_cpus, "answers_kept": args.answers_kept,
            "crl": {"autoenroll": crl_ours, "openssl": crl_theirs, "time_ratio": crl_ours["s"] / crl_theirs["s"],
                    "autoenroll_command": crl_command, "partition": partition},
            "ocsp": ours and {"autoenroll": ours, "openssl": theirs, "rate_ratio": ours["rps"] / theirs["rps"]},
        }, indent=2, default=str) + "\n")  # fmt: skip
    if ours is not None and (ours["wrong"] or theirs["wrong"]):
        print("WRONG ANSWERS:", ours["wrong"][:5], theirs["wrong"][:5])
        raise SystemExit(1)


if __name__ == "__main__":
    main()
