"""Benchmark: CRL generation time and OCSP responses/s with N revoked certificates.

Baselines measured in the same run, on the same certificates and the same machine:
  * CRL:  `openssl ca -gencrl` over an OpenSSL index.txt holding the same revocations;
  * OCSP: `openssl ocsp -index` as a responder for the same certificates (same responder key type,
    same worker count via -multi), driven by the same load generator with the same requests.

Everything runs on loopback. `openssl ocsp` can only bind every interface, so when run as root
the benchmark re-executes itself in a private network namespace whose only interface is `lo`
(`unshare --net`); otherwise it says so and keeps the OpenSSL responder bounded by -nrequest.
Bounded in count (--revoked <= 50,000, --requests <= 50,000) and time (--time-limit per phase).

    .venv/bin/python bench/revocation.py                # 10,000 revoked, 4,000 OCSP requests
    .venv/bin/python bench/revocation.py --revoked 1000 --requests 1000
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

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
    p.add_argument("--revoked", type=int, default=10_000, help="revoked certificates (max 50,000)")
    p.add_argument("--valid", type=int, default=1_000, help="valid certificates next to them (max 50,000)")
    p.add_argument("--requests", type=int, default=4_000, help="OCSP requests per responder (max 50,000)")
    p.add_argument("--concurrency", type=int, default=8, help="client threads")
    p.add_argument("--workers", type=int, default=2, help="responder processes (gunicorn workers / openssl -multi)")
    p.add_argument("--crl-runs", type=int, default=3)
    p.add_argument("--time-limit", type=float, default=120.0, help="seconds allowed per load phase")
    p.add_argument("--no-netns", action="store_true", help="do not re-execute in a private network namespace")
    p.add_argument("--in-netns", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for name, top in (("revoked", 50_000), ("valid", 50_000), ("requests", 50_000), ("concurrency", 64)):
        if not 1 <= getattr(args, name) <= top:
            p.error(f"--{name} must be between 1 and {top}")
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


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 60, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log else ""
            raise SystemExit(f"{proc.args[0]} {proc.args[1]} exited early with {proc.returncode}\n{tail}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port}")


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


def populate(revoked: int, valid: int):
    """Sign real certificates with the issuing CA and record them, `revoked` of them revoked."""
    from cryptography.hazmat.primitives import hashes
    from django.conf import settings
    from django.db import transaction
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
    rows, entries = [], []
    started = time.perf_counter()
    for i in range(revoked + valid):
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
            )
        )
        entries.append((cert.serial_number, cert.not_valid_after_utc, revoked_at, reason))
    signed = time.perf_counter() - started
    with transaction.atomic():
        Certificate.objects.bulk_create(rows, batch_size=1000)
        CertificateAuthority.objects.filter(pk=ca.pk).update(revocation_generation=F("revocation_generation") + revoked)
    took = time.perf_counter() - started
    print(f"signed and recorded {len(rows):,} certificates in {took:.1f} s (signing {signed:.1f} s)")
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


def bench_crl(ca, runs: int, osl: Path, expected: int) -> tuple[float, float]:
    from cryptography import x509

    from autoenroll.server.certificates import publication

    ours = []
    for _ in range(runs):
        started = time.perf_counter()
        row = publication.publish_crl(ca)
        ours.append(time.perf_counter() - started)
        assert row.entries == expected, (row.entries, expected)
    theirs = []
    for i in range(runs):
        started = time.perf_counter()
        subprocess.run(
            ["openssl", "ca", "-gencrl", "-config", osl / "ca.cnf", "-out", osl / f"crl{i}.pem"],
            check=True,
            capture_output=True,
            timeout=300,
        )
        theirs.append(time.perf_counter() - started)
        assert len(x509.load_pem_x509_crl((osl / f"crl{i}.pem").read_bytes())) == expected
    print(f"CRL with {expected:,} entries: {len(bytes(row.der)):,} bytes, number {row.number}")
    return statistics.median(ours), statistics.median(theirs)


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


def run_load(port: int, path: str, requests, concurrency: int, time_limit: float) -> dict:
    """POST every request once over fresh connections from `concurrency` threads; check every answer."""
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
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=time_limit + 30)
    total = time.perf_counter() - started
    latencies.sort()
    return {
        "done": len(latencies),
        "rps": len(latencies) / total,
        "p50": latencies[len(latencies) // 2] * 1000 if latencies else float("nan"),
        "p99": latencies[int(len(latencies) * 0.99) - 1] * 1000 if latencies else float("nan"),
        "wrong": wrong,
    }


def bench_ocsp(args, workdir: Path, env: dict, ca, backend, entries, osl: Path, netns: bool):
    from cryptography.hazmat.primitives import serialization

    from autoenroll import pki

    requests = build_requests(backend.certificate, entries, args.requests)

    # ours: the publication listener of `autoenroll-server serve`
    port = free_port()
    log = open(workdir / "serve.log", "wb")  # noqa: SIM115
    server = subprocess.Popen(
        [
            str(VENV_BIN / "autoenroll-server"),
            "serve",
            "--publication-only",
            "--publication-listen",
            f"127.0.0.1:{port}",
            "--workers",
            str(args.workers),
        ],
        env=env | {"AUTOENROLL_LOG_LEVEL": "WARNING"},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_port(port, server, log=workdir / "serve.log")
        run_load(port, f"/ocsp/{ca.name}", requests[:20], 2, 60)  # warm-up: responder certificate, key per worker
        ours = run_load(port, f"/ocsp/{ca.name}", requests, args.concurrency, args.time_limit)
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
    total = args.requests + 20
    cmd = [
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
    if args.workers > 1:
        cmd += ["-multi", str(args.workers)]
    else:
        cmd += ["-nrequest", str(total)]
    if not netns:
        print("note: not in a private network namespace; openssl ocsp listens on all interfaces for this phase")
    osl_log = open(workdir / "openssl-ocsp.log", "wb")  # noqa: SIM115
    # With -multi, openssl makes itself a process group leader (setpgid, which fails in a new session).
    osl_proc = subprocess.Popen(cmd, stdout=osl_log, stderr=subprocess.STDOUT)
    try:
        wait_port(port, osl_proc, log=workdir / "openssl-ocsp.log")
        run_load(port, "/", requests[:20], 2, 60)
        theirs = run_load(port, "/", requests, args.concurrency, args.time_limit)
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
        ca, backend, entries = populate(args.revoked, args.valid)
        osl = write_openssl_ca(workdir, backend, entries)
        crl_ours, crl_theirs = bench_crl(ca, args.crl_runs, osl, args.revoked)
        ours, theirs = bench_ocsp(args, workdir, env, ca, backend, entries, osl, netns)

    print()
    print(f"{'':34} {'autoenroll':>12} {'openssl':>12} {'ratio':>8}")
    print(f"{'CRL generation, median (s)':34} {crl_ours:12.3f} {crl_theirs:12.3f} {crl_ours / crl_theirs:7.2f}x")
    print(f"{'OCSP responses/s':34} {ours['rps']:12.0f} {theirs['rps']:12.0f} {ours['rps'] / theirs['rps']:7.2f}x")
    print(f"{'OCSP latency p50 (ms)':34} {ours['p50']:12.1f} {theirs['p50']:12.1f}")
    print(f"{'OCSP latency p99 (ms)':34} {ours['p99']:12.1f} {theirs['p99']:12.1f}")
    checked = [f"{r['done']:,}/{len(r['wrong'])}" for r in (ours, theirs)]
    print(f"{'OCSP answers checked/wrong':34} {checked[0]:>12} {checked[1]:>12}")
    print("(CRL: ours is sign + store in the database, theirs includes process start; ratio < 1 means faster.")
    print(" OCSP: ratio > 1 means more responses/s than openssl ocsp -index.)")
    if ours["wrong"] or theirs["wrong"]:
        print("WRONG ANSWERS:", ours["wrong"][:5], theirs["wrong"][:5])
        raise SystemExit(1)


if __name__ == "__main__":
    main()
