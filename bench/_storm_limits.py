"""The limits bench/storm.py puts beside its figures: the CA key's signing rate and the SPNEGO accept rate,
both measured in-process on the same machine, each loop bounded in count and time."""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import gssapi


def _sign_rates(
    ca_dir: str, passphrase: bytes, public_url: str, seconds: float, start_at: float
) -> tuple[float, float]:
    """(raw ECDSA/RSA signatures/s of the issuing CA key, S/MIME certificates issued/s) in this process."""
    from autoenroll import pki

    ca = Path(ca_dir)
    backend = pki.FileKeyBackend(ca / "issuing-ca.pem", ca / "issuing-ca.key", passphrase)
    urls = pki.PublicationURLs.for_ca(public_url, "bench")
    subject_key = pki.generate_private_key("ec-p256").public_key()
    pki.issue_smime_certificate(backend, subject_key, "user1@test.com", urls)  # decrypts the key once
    key = backend._private_key()
    algorithm = pki.signature_hash_for_key(key)
    sign = _signer(key, algorithm)
    time.sleep(max(0.0, start_at - time.time()))  # both processes start together
    rates = []
    for job in (
        lambda: sign(b"x" * 300),
        lambda: pki.issue_smime_certificate(backend, subject_key, "u@test.com", urls),
    ):
        n, t0 = 0, time.perf_counter()
        while n < 1_000_000 and time.perf_counter() - t0 < seconds:
            job()
            n += 1
        rates.append(n / (time.perf_counter() - t0))
    return rates[0], rates[1]


def _signer(key, algorithm):
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    if isinstance(key, ec.EllipticCurvePrivateKey):
        return lambda data: key.sign(data, ec.ECDSA(algorithm))
    if isinstance(key, rsa.RSAPrivateKey):
        return lambda data: key.sign(data, padding.PKCS1v15(), algorithm)
    raise TypeError(f"unsupported CA key {type(key).__name__}")


def signing_rates(ca_dir: Path, passphrase: bytes, public_url: str, processes: int, seconds: float = 1.5) -> dict:
    """Signing rates with 1 process and with `processes` in parallel (the machine's limit)."""
    out = {}
    context = multiprocessing.get_context("spawn")  # no fork of a process that holds threads and GSS state
    with ProcessPoolExecutor(max_workers=processes, mp_context=context) as pool:
        for n in sorted({1, processes}):
            start_at = time.time() + 2.5  # spawned interpreters import cryptography first
            futures = [
                pool.submit(_sign_rates, str(ca_dir), passphrase, public_url, seconds, start_at) for _ in range(n)
            ]
            results = [f.result(timeout=60) for f in futures]
            out[n] = {
                "raw_signatures_per_s": sum(r[0] for r in results),
                "certificates_per_s": sum(r[1] for r in results),
            }
    return out


def spnego_accept_rate(initiators: list[gssapi.Credentials], service: gssapi.Name, keytab: Path, n: int = 500) -> dict:
    """Tokens made first (one fresh context each, as clients do), then only the acceptor is timed (one thread)."""
    spnego = gssapi.OID.from_int_seq("1.3.6.1.5.5.2")
    tokens = []
    t0 = time.perf_counter()
    for i in range(n):
        ctx = gssapi.SecurityContext(name=service, creds=initiators[i % len(initiators)], usage="initiate", mech=spnego)
        tokens.append(ctx.step())
    init_rate = n / (time.perf_counter() - t0)
    acceptor = gssapi.Credentials(usage="accept", store={"keytab": str(keytab)})
    t0 = time.perf_counter()
    for token in tokens:
        ctx = gssapi.SecurityContext(creds=acceptor, usage="accept")
        ctx.step(token)
        if not ctx.complete:
            raise RuntimeError("the in-process SPNEGO accept did not complete")
    return {"accepts_per_s": n / (time.perf_counter() - t0), "initiates_per_s": init_rate, "tokens": n}
