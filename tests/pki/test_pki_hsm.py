"""The PKCS#11 CA backend against a real SoftHSM2 token, proven with pkilint and OpenSSL.

The tests create their own token in a temporary directory (SOFTHSM2_CONF points at a
temporary config); they are skipped when SoftHSM2 is not installed, unless
AUTOENROLL_REQUIRE_SAMBA=1 (CI), where a missing HSM is a failure.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import shutil
import subprocess
import sys
import threading
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from autoenroll.pki import (
    PKCS11URI,
    BackendConfigurationError,
    HSMError,
    HSMKeyExists,
    PKCS11Backend,
    PKIError,
    RevokedEntry,
    TokenHierarchy,
    UnsupportedKeyType,
    WrongPIN,
    ca_name,
    generate_key_in_token,
    generate_private_key,
    init_hierarchy_in_token,
    issue_crl,
    issue_smime_certificate,
    load_backend,
    signature_hash_for_key,
)
from autoenroll.pki.profiles import root_ca_builder, smime_builder
from checks import lint_crl, lint_pkix, lint_smime_mailbox_strict, run_openssl
from hsm_token import MODULE, PIN, TOKEN, softhsm_token, uri

BASE_URL = "http://ccm.test.com:8080"
MAIL = "user1@test.com"
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
HSM_KEY_TYPES = ("ec-p256", "rsa-3072")


def _pem(path: Path, *objects: x509.Certificate | x509.CertificateRevocationList) -> Path:
    path.write_bytes(b"".join(o.public_bytes(serialization.Encoding.PEM) for o in objects))
    return path


@pytest.fixture(scope="module")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with softhsm_token(tmp_path_factory.mktemp("softhsm")) as directory:
        yield directory


@dataclass
class TokenChain:
    key_type: str
    hierarchy: TokenHierarchy
    root_pem: Path
    issuing_pem: Path
    leaf: x509.Certificate
    leaf_pem: Path

    @property
    def root_backend(self) -> PKCS11Backend:
        return PKCS11Backend(self.hierarchy.root_certificate, self.hierarchy.root_uri, PIN)

    @property
    def issuing_backend(self) -> PKCS11Backend:
        return PKCS11Backend(self.hierarchy.issuing_certificate, self.hierarchy.issuing_uri, PIN.encode())


@pytest.fixture(scope="module", params=HSM_KEY_TYPES)
def token_chain(request: pytest.FixtureRequest, softhsm: Path) -> TokenChain:
    """Root and S/MIME issuing CA with their keys in the token, and an S/MIME leaf issued through it."""
    key_type = request.param
    hierarchy = init_hierarchy_in_token(
        uri(f"root-{key_type}"),
        uri(f"smime-{key_type}"),
        PIN,
        key_type,
        name=f"HSM {key_type}",
        organization="Test Organization",
        country="FR",
        publication_base_url=BASE_URL,
    )
    directory = softhsm / key_type
    directory.mkdir()
    backend = PKCS11Backend(hierarchy.issuing_certificate, hierarchy.issuing_uri, PIN)
    leaf = issue_smime_certificate(backend, generate_private_key("ec-p256").public_key(), MAIL, hierarchy.issuing_urls)
    return TokenChain(
        key_type,
        hierarchy,
        _pem(directory / "root.pem", hierarchy.root_certificate),
        _pem(directory / "issuing.pem", hierarchy.issuing_certificate),
        leaf,
        _pem(directory / "leaf.pem", leaf),
    )


# --- without a token ---------------------------------------------------------------------------


@pytest.mark.parametrize(("key_type", "other_key_type"), [("ec-p256", "ec-p384"), ("rsa-3072", "rsa-4096")])
def test_tbs_depends_on_the_key_type_only_not_on_the_key(key_type, other_key_type):
    """Why a throwaway key works: the TBS holds the signature algorithm, never the signing key."""
    subject_key = generate_private_key(key_type).public_key()
    builder = root_ca_builder(subject_key, ca_name("TBS Root CA", "Test Organization"))
    one, two = generate_private_key(key_type), generate_private_key(key_type)
    first = builder.sign(one, signature_hash_for_key(one))
    second = builder.sign(two, signature_hash_for_key(two))
    assert first.tbs_certificate_bytes == second.tbs_certificate_bytes
    assert first.signature != second.signature
    # A key of another size picks another hash, hence another AlgorithmIdentifier in the TBS.
    other = generate_private_key(other_key_type)
    assert builder.sign(other, signature_hash_for_key(other)).tbs_certificate_bytes != first.tbs_certificate_bytes


def test_pkcs11_uri_parsing():
    parsed = PKCS11URI.parse("pkcs11:token=My%20CA;object=smime-ca;id=%01%ff;type=private?module-path=/opt/p11.so")
    assert (parsed.token, parsed.object, parsed.id, parsed.module_path) == (
        "My CA",
        "smime-ca",
        b"\x01\xff",
        "/opt/p11.so",
    )
    assert PKCS11URI.parse("pkcs11:serial=abc;slot-id=3;id=%02").slot_id == 3
    for bad, message in [
        ("/var/lib/autoenroll/issuing-ca.key", "not a PKCS#11 URI"),
        ("pkcs11:token=CA;object=k?pin-value=1234", "do not put the PIN"),
        ("pkcs11:token=CA;object=k;type=cert", "type=private"),
        ("pkcs11:token=CA", "names no key"),
        ("pkcs11:token=CA;object=k;library-version=1", "unsupported attribute"),
    ]:
        with pytest.raises(HSMError, match=message):
            PKCS11URI.parse(bad)


def test_missing_module_is_a_clear_configuration_error(tmp_path):
    backend = PKCS11Backend(None, uri("nothing"), PIN, module=tmp_path / "no-such-pkcs11.so")
    with pytest.raises(HSMError, match="no-such-pkcs11.so not found"):
        backend.key_type()


# --- with a SoftHSM2 token ---------------------------------------------------------------------


def test_token_signature_replaces_only_the_signature(token_chain):
    """The HSM-signed certificate has exactly the TBS a software key would have signed."""
    backend = token_chain.issuing_backend
    h = token_chain.hierarchy
    builder = smime_builder(h.issuing_certificate, generate_private_key("ec-p256").public_key(), MAIL, h.issuing_urls)
    cert = backend.sign(builder)
    software = generate_private_key(token_chain.key_type)
    assert cert.tbs_certificate_bytes == builder.sign(software, signature_hash_for_key(software)).tbs_certificate_bytes
    assert cert.signature_algorithm_oid == h.issuing_certificate.signature_algorithm_oid


def test_root_and_issuing_ca_keys_are_in_the_token(token_chain):
    h = token_chain.hierarchy
    h.root_certificate.verify_directly_issued_by(h.root_certificate)
    h.issuing_certificate.verify_directly_issued_by(h.root_certificate)
    assert lint_pkix(h.root_certificate) == []
    assert lint_pkix(h.issuing_certificate) == []
    for backend in (token_chain.root_backend, token_chain.issuing_backend):
        assert backend.key_type() == token_chain.key_type
        protection = backend.key_protection()
        # CKA_SENSITIVE true and CKA_EXTRACTABLE false: the key can sign, never be read or wrapped out.
        assert protection["sensitive"] is True
        assert protection["extractable"] is False
        assert protection["always_sensitive"] is True and protection["never_extractable"] is True
        assert protection["private"] is True and protection["local"] is True


_READ_KEY_VALUE = """
import sys, pkcs11
from pkcs11 import Attribute, ObjectClass
module, token, pin, label = sys.argv[1:]
with pkcs11.lib(module).get_token(token_label=token).open(user_pin=pin) as session:
    key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=label)
    try:
        key[Attribute.VALUE if key.key_type == pkcs11.KeyType.EC else Attribute.PRIVATE_EXPONENT]
    except pkcs11.AttributeSensitive:
        print("sensitive")
    else:
        print("READABLE")
"""


def test_another_process_cannot_read_the_private_key(token_chain):
    """Another process, logged in with the PIN, may not read the private key's secret attribute."""
    label = f"smime-{token_chain.key_type}"
    read = subprocess.run(
        [sys.executable, "-c", _READ_KEY_VALUE, MODULE, TOKEN, PIN, label], capture_output=True, text=True, timeout=60
    )
    assert read.returncode == 0, read.stderr
    assert read.stdout.strip() == "sensitive"
    if shutil.which("pkcs11-tool") is not None:  # OpenSC's view of the same flags
        listing = subprocess.run(
            ["pkcs11-tool", "--module", MODULE, "--token-label", TOKEN, "--login", "--pin", PIN]
            + ["--list-objects", "--type", "privkey"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert listing.returncode == 0, listing.stderr
        block = listing.stdout.split(f"label:      {label}\n", 1)[1].split("Private Key Object", 1)[0]
        assert "never extractable" in block and "sensitive" in block


def test_smime_certificate_signed_in_the_token_passes_pkilint_and_openssl(token_chain):
    assert lint_smime_mailbox_strict(token_chain.leaf) == []
    result = run_openssl(
        "verify",
        "-x509_strict",
        "-purpose",
        "smimesign",
        "-CAfile",
        token_chain.root_pem,
        "-untrusted",
        token_chain.issuing_pem,
        token_chain.leaf_pem,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith(": OK")


def test_crl_signed_in_the_token_verifies(token_chain, tmp_path):
    h = token_chain.hierarchy
    crl = x509.load_der_x509_crl(issue_crl(token_chain.issuing_backend, 7, [RevokedEntry(4242, NOW, "key_compromise")]))
    assert crl.is_signature_valid(h.issuing_certificate.public_key())
    assert lint_crl(crl.public_bytes(serialization.Encoding.DER)) == []
    crl_pem = _pem(tmp_path / "smime.crl", crl)
    check = run_openssl("crl", "-in", crl_pem, "-noout", "-CAfile", token_chain.issuing_pem)
    assert check.returncode == 0 and "verify OK" in check.stdout + check.stderr, check.stdout + check.stderr
    # And a full revocation check of the leaf with both CRLs, the root's signed in the token too.
    root_crl = x509.load_der_x509_crl(issue_crl(token_chain.root_backend, 1, []))
    assert root_crl.is_signature_valid(h.root_certificate.public_key())
    crls = _pem(tmp_path / "crls.pem", crl, root_crl)
    verify = run_openssl(
        "verify",
        "-crl_check_all",
        "-CRLfile",
        crls,
        "-CAfile",
        token_chain.root_pem,
        "-untrusted",
        token_chain.issuing_pem,
        token_chain.leaf_pem,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_load_backend_by_dotted_path_with_the_server_options(token_chain):
    h = token_chain.hierarchy
    backend = load_backend(
        "autoenroll.pki.hsm.PKCS11Backend",
        certificate=h.issuing_certificate,
        key_path=h.issuing_uri,
        passphrase=PIN.encode(),
    )
    assert isinstance(backend, PKCS11Backend)
    cert = issue_smime_certificate(backend, generate_private_key("ec-p256").public_key(), MAIL, h.issuing_urls)
    cert.verify_directly_issued_by(h.issuing_certificate)


def test_wrong_pin_is_a_clear_pki_error_and_is_not_retried(token_chain):
    h = token_chain.hierarchy
    wrong = f"wrong-{token_chain.key_type}"  # refused PINs are remembered per process
    backend = PKCS11Backend(h.issuing_certificate, h.issuing_uri, wrong.encode())
    builder_key = generate_private_key("ec-p256").public_key()
    with pytest.raises(WrongPIN) as caught:
        issue_smime_certificate(backend, builder_key, MAIL, h.issuing_urls)
    exc = caught.value
    assert isinstance(exc, PKIError)
    assert str(exc) == f"wrong PIN for PKCS#11 token {TOKEN!r}"
    # No chained PKCS#11 traceback for the admin to wade through, and never the PIN.
    assert exc.__cause__ is None and exc.__suppress_context__
    rendered = "".join(traceback.format_exception(exc))
    assert "During handling" not in rendered and "PinIncorrect" not in rendered and wrong not in rendered
    # A refused PIN is not presented again (real tokens lock the PIN after a few failures) ...
    with pytest.raises(WrongPIN, match="not retried"):
        PKCS11Backend(h.issuing_certificate, h.issuing_uri, wrong).key_type()
    # ... and the right PIN still works afterwards.
    issue_smime_certificate(token_chain.issuing_backend, builder_key, MAIL, h.issuing_urls)
    with pytest.raises(WrongPIN, match="no PIN"):
        PKCS11Backend(h.issuing_certificate, h.issuing_uri, b"")


def test_key_that_does_not_match_the_certificate_is_refused(token_chain):
    h = token_chain.hierarchy
    backend = PKCS11Backend(h.root_certificate, h.issuing_uri, PIN)
    with pytest.raises(BackendConfigurationError, match="does not match the certificate"):
        issue_smime_certificate(backend, generate_private_key("ec-p256").public_key(), MAIL, h.issuing_urls)


def test_unknown_key_and_token_are_clear_errors(token_chain):
    h = token_chain.hierarchy
    with pytest.raises(HSMError, match="no private key object 'absent'"):
        PKCS11Backend(h.issuing_certificate, uri("absent"), PIN).key_type()
    with pytest.raises(HSMError, match="no PKCS#11 token matches token='elsewhere'"):
        PKCS11Backend(h.issuing_certificate, "pkcs11:token=elsewhere;object=x", PIN).key_type()


def test_existing_key_is_never_overwritten(token_chain):
    with pytest.raises(HSMKeyExists, match="already exists"):
        generate_key_in_token(token_chain.hierarchy.issuing_uri, token_chain.key_type, PIN)
    with pytest.raises(UnsupportedKeyType):
        generate_key_in_token(uri("weak"), "rsa-2048", PIN)


def test_generated_public_key_is_the_token_key(softhsm):
    public = generate_key_in_token(uri("generated-p384") + ";id=%0a%0b", "ec-p384", PIN)
    builder = root_ca_builder(public, ca_name("Generated Root CA", "Test Organization"))
    root = PKCS11Backend(None, uri("generated-p384"), PIN).sign(builder)
    root.verify_directly_issued_by(root)
    assert root.public_key() == public
    assert PKCS11Backend(root, "pkcs11:token=" + TOKEN + ";id=%0a%0b", PIN).key_type() == "ec-p384"


def test_concurrent_signatures_share_one_token_session(token_chain):
    h = token_chain.hierarchy
    public = generate_private_key("ec-p256").public_key()
    results: list[x509.Certificate] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                results.append(issue_smime_certificate(token_chain.issuing_backend, public, MAIL, h.issuing_urls))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(results) == 40
    for cert in results:
        cert.verify_directly_issued_by(h.issuing_certificate)


def _sign_in_child(chain: TokenChain, queue: multiprocessing.Queue) -> None:
    try:
        crl = x509.load_der_x509_crl(issue_crl(chain.issuing_backend, 9, []))
        queue.put(crl.public_bytes(serialization.Encoding.DER))
    except BaseException as exc:  # noqa: BLE001 - sent to the parent
        queue.put(repr(exc))


def test_forked_worker_can_sign_and_leaves_the_parent_session_alone(token_chain):
    """Like a server worker forked after the master signed: the child logs in on its own."""
    token_chain.issuing_backend.key_type()  # the parent is logged in
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_sign_in_child, args=(token_chain, queue))
    child.start()
    answer = queue.get(timeout=60)
    child.join(60)
    assert isinstance(answer, bytes), answer
    crl = x509.load_der_x509_crl(answer)
    assert crl.is_signature_valid(token_chain.hierarchy.issuing_certificate.public_key())
    # The parent's session survived the child.
    issue_crl(token_chain.issuing_backend, 10, [])


_FIRST_TOKEN_USE_THEN_TLS_READ = """
import socket, ssl, sys, tempfile, threading
from pathlib import Path
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from autoenroll.pki import PKCS11Backend, generate_private_key
from autoenroll.pki.hsm import WrongPIN
from autoenroll.pki.profiles import root_ca_builder

key = generate_private_key("ec-p256")
name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "localhost")])
cert = root_ca_builder(key.public_key(), name, validity_days=1).sign(key, hashes.SHA256())
with tempfile.TemporaryDirectory() as folder:
    pem = Path(folder) / "server.pem"
    clear = serialization.NoEncryption()
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM)
                    + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, clear))
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(pem)
client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
client_context.check_hostname, client_context.verify_mode = False, ssl.CERT_NONE
ends = socket.socketpair()
server = []  # kept open: the peer says nothing until the read times out
accepting = threading.Thread(target=lambda: server.append(server_context.wrap_socket(ends[1], server_side=True)))
accepting.start()
client = client_context.wrap_socket(ends[0])
accepting.join()
server[0].sendall(b"ready")
assert client.recv(5) == b"ready"  # the handshake and its session tickets are read: no data is on its way
client.settimeout(0.2)

certificate_pem, key_uri, pin = sys.argv[1:]
issuing = x509.load_pem_x509_certificate(Path(certificate_pem).read_bytes())
try:  # the process's first use of the token: the module loads, and the PIN is refused
    PKCS11Backend(issuing, key_uri, "not-" + pin).key_type()
except WrongPIN:
    pass
try:
    print("read", client.recv(5))
except OSError as exc:  # the timeout, or the stale error as an SSLError
    print(type(exc).__name__, exc)
"""


def test_a_token_call_leaves_no_openssl_error_for_the_threads_next_tls_read(token_chain):
    """SoftHSM leaves errors on the thread's OpenSSL queue (loading: "could not load the shared library"; a
    refused PIN: "bad decrypt"), and Python's ssl module reports the next read that has to wait as that error
    (CPython issue 81891). An LDAPS read of AD in the same request thread failed so, with no byte received,
    until the backend emptied the queue after each call into the module. In a new process: the module loads."""
    h = token_chain.hierarchy
    run = subprocess.run(
        [sys.executable, "-c", _FIRST_TOKEN_USE_THEN_TLS_READ, str(token_chain.issuing_pem), h.issuing_uri, PIN],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("TimeoutError"), run.stdout
