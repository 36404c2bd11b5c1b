"""Key generation, the hash that follows the key, and encrypted key files."""

from __future__ import annotations

import base64
import os
import stat

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from autoenroll.pki import (
    KEY_TYPES,
    KeyFileError,
    KeyFileExists,
    KeyFileMissing,
    UnsupportedKeyType,
    WrongPassphrase,
    generate_private_key,
    key_type_of,
    read_encrypted_key,
    signature_hash_for_key,
    write_encrypted_key,
)
from autoenroll.pki.keys import PBKDF2_ITERATIONS, encrypt_private_key_pem

PASSPHRASE = b"s3cret passphrase"


@pytest.fixture(scope="module")
def keys():
    return {key_type: generate_private_key(key_type) for key_type in KEY_TYPES}


def test_each_key_type_generates_the_named_algorithm_and_size(keys):
    assert isinstance(keys["ec-p256"].curve, ec.SECP256R1)
    assert isinstance(keys["ec-p384"].curve, ec.SECP384R1)
    for bits in (2048, 3072, 4096):
        key = keys[f"rsa-{bits}"]
        assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == bits
        assert key.private_numbers().public_numbers.e == 65537
    for key_type, key in keys.items():
        assert key_type_of(key) == key_type == key_type_of(key.public_key())


@pytest.mark.parametrize(
    ("key_type", "hash_cls"),
    [
        ("ec-p256", hashes.SHA256),
        ("rsa-2048", hashes.SHA256),
        ("rsa-3072", hashes.SHA256),
        ("ec-p384", hashes.SHA384),
        ("rsa-4096", hashes.SHA384),
    ],
)
def test_signature_hash_follows_key_strength(keys, key_type, hash_cls):
    assert isinstance(signature_hash_for_key(keys[key_type]), hash_cls)
    assert isinstance(signature_hash_for_key(keys[key_type].public_key()), hash_cls)


def test_unknown_key_types_are_refused():
    for bad in ("rsa-1024", "ec-p521", "ed25519", "", "EC-P256"):
        with pytest.raises(UnsupportedKeyType):
            generate_private_key(bad)
    with pytest.raises(UnsupportedKeyType):
        key_type_of(ec.generate_private_key(ec.SECP521R1()))


def test_rsa_2048_is_for_end_entities_only():
    generate_private_key("rsa-2048")
    with pytest.raises(UnsupportedKeyType, match="CA"):
        generate_private_key("rsa-2048", ca=True)


@pytest.mark.parametrize("key_type", ["ec-p256", "ec-p384", "rsa-3072"])
def test_encrypted_key_round_trips(keys, key_type, tmp_path):
    path = write_encrypted_key(keys[key_type], tmp_path / "k.pem", PASSPHRASE)
    loaded = read_encrypted_key(path, PASSPHRASE)
    assert loaded.private_numbers() == keys[key_type].private_numbers()


def test_key_file_is_0600_and_encrypted_pkcs8(keys, tmp_path):
    old_umask = os.umask(0)  # even a permissive umask must not widen the mode
    try:
        path = write_encrypted_key(keys["ec-p256"], tmp_path / "k.pem", PASSPHRASE)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = path.read_bytes()
    assert data.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
    assert b"BEGIN PRIVATE KEY" not in data and b"BEGIN EC PRIVATE KEY" not in data


def test_key_file_uses_pbes2_aes256_with_strong_kdf(keys, tmp_path, openssl):
    path = write_encrypted_key(keys["ec-p256"], tmp_path / "k.pem", PASSPHRASE)
    dump = openssl("asn1parse", "-in", path)
    assert dump.returncode == 0, dump.stderr
    assert ":PBES2" in dump.stdout and ":PBKDF2" in dump.stdout
    assert ":hmacWithSHA256" in dump.stdout and ":aes-256-cbc" in dump.stdout
    iterations = [int(line.rsplit(":", 1)[1], 16) for line in dump.stdout.splitlines() if "INTEGER" in line]
    assert iterations and iterations[0] >= 600_000


def test_openssl_reads_our_encrypted_key_files(keys, tmp_path, openssl):
    path = write_encrypted_key(keys["rsa-3072"], tmp_path / "k.pem", PASSPHRASE)
    result = openssl("pkey", "-in", path, "-passin", f"pass:{PASSPHRASE.decode()}", "-noout")
    assert result.returncode == 0, result.stderr
    result = openssl("pkey", "-in", path, "-passin", "pass:wrong", "-noout")
    assert result.returncode != 0


def test_writing_never_overwrites_an_existing_key_file(keys, tmp_path):
    path = write_encrypted_key(keys["ec-p256"], tmp_path / "k.pem", PASSPHRASE)
    before = path.read_bytes()
    with pytest.raises(KeyFileExists, match="refusing to overwrite"):
        write_encrypted_key(keys["ec-p384"], path, PASSPHRASE)
    assert path.read_bytes() == before
    assert isinstance(KeyFileExists("x"), FileExistsError)


def test_writing_through_a_dangling_symlink_is_refused(keys, tmp_path):
    target = tmp_path / "elsewhere.pem"
    (tmp_path / "link.pem").symlink_to(target)
    with pytest.raises(KeyFileExists):
        write_encrypted_key(keys["ec-p256"], tmp_path / "link.pem", PASSPHRASE)
    assert not target.exists()


def test_empty_passphrase_is_refused(keys, tmp_path):
    with pytest.raises(ValueError, match="passphrase"):
        write_encrypted_key(keys["ec-p256"], tmp_path / "k.pem", b"")
    assert not (tmp_path / "k.pem").exists()


def test_wrong_passphrase_raises_wrong_passphrase_with_a_human_message(keys, tmp_path):
    path = write_encrypted_key(keys["ec-p256"], tmp_path / "k.pem", PASSPHRASE)
    with pytest.raises(WrongPassphrase) as info:
        read_encrypted_key(path, b"not the passphrase")
    message = str(info.value)
    assert "wrong passphrase" in message and str(path) in message
    assert info.value.__suppress_context__  # no chained cryptography traceback for the user
    with pytest.raises(WrongPassphrase):
        read_encrypted_key(path, b"")


def test_missing_key_file_raises_a_clear_error(tmp_path):
    with pytest.raises(KeyFileMissing, match="does not exist"):
        read_encrypted_key(tmp_path / "nope.pem", PASSPHRASE)


def test_unreadable_key_file_raises_a_clear_error(tmp_path):
    with pytest.raises(KeyFileError, match="cannot read"):
        read_encrypted_key(tmp_path, PASSPHRASE)  # a directory


def test_plaintext_or_garbage_key_files_are_refused(keys, tmp_path):
    from cryptography.hazmat.primitives import serialization

    plain = tmp_path / "plain.pem"
    plain.write_bytes(
        keys["ec-p256"].private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with pytest.raises(KeyFileError, match="not encrypted"):
        read_encrypted_key(plain, PASSPHRASE)
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"hello")
    with pytest.raises(KeyFileError, match="not a PEM"):
        read_encrypted_key(garbage, PASSPHRASE)


def _der_of(pem: bytes) -> bytes:
    return base64.b64decode(b"".join(pem.splitlines()[1:-1]))


def _pem(der: bytes) -> bytes:
    body = base64.encodebytes(der)
    return b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n" + body + b"-----END ENCRYPTED PRIVATE KEY-----\n"


def test_encrypted_key_structure_is_pbes2_as_rfc_8018_declares_it(keys):
    from pyasn1.codec.der import decoder
    from pyasn1_alt_modules import rfc5958, rfc8018

    der = _der_of(encrypt_private_key_pem(keys["ec-p256"], PASSPHRASE, iterations=1000))
    info, rest = decoder.decode(der, asn1Spec=rfc5958.EncryptedPrivateKeyInfo())
    assert rest == b""
    assert info["encryptionAlgorithm"]["algorithm"] == rfc8018.id_PBES2
    pbes2, _ = decoder.decode(info["encryptionAlgorithm"]["parameters"], asn1Spec=rfc8018.PBES2_params())
    assert pbes2["encryptionScheme"]["algorithm"] == rfc8018.aes256_CBC_PAD
    kdf, _ = decoder.decode(pbes2["keyDerivationFunc"]["parameters"], asn1Spec=rfc8018.PBKDF2_params())
    assert (int(kdf["iterationCount"]), kdf["prf"]["algorithm"]) == (1000, rfc8018.id_hmacWithSHA256)
    assert len(kdf["salt"]["specified"]) == 16
    assert PBKDF2_ITERATIONS == 600_000


@pytest.mark.parametrize(
    "der",
    [
        b"",
        b"\x30",  # truncated
        b"\x30\x84\xff\xff\xff\xff\x30\x00",  # huge length
        b"\x30\x89" + b"\xff" * 9,  # length of length beyond any limit
        b"\x31\x03\x02\x01\x05",  # wrong tag
        b"\x30\x80" * 5000,  # deep nesting, indefinite lengths
        b"\x04\x00",
    ],
    ids=["empty", "truncated", "huge-length", "length-of-length", "wrong-tag", "deep-nesting", "octets"],
)
def test_hostile_encrypted_key_files_are_refused_cleanly(tmp_path, der):
    path = tmp_path / "hostile.pem"
    path.write_bytes(_pem(der))
    with pytest.raises(KeyFileError):
        read_encrypted_key(path, PASSPHRASE)


def test_truncated_encrypted_key_files_are_refused_cleanly(keys, tmp_path):
    der = _der_of(encrypt_private_key_pem(keys["ec-p256"], PASSPHRASE, iterations=10))
    for cut in range(0, len(der), 7):
        path = tmp_path / f"cut{cut}.pem"
        path.write_bytes(_pem(der[:cut]))
        with pytest.raises(KeyFileError):
            read_encrypted_key(path, PASSPHRASE)
