"""CRLs built by the PKI layer, checked by OpenSSL and pkilint's RFC 5280 + CA/B Forum CRL linter."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from autoenroll.pki import (
    CRLError,
    RevokedEntry,
    crl_facts,
    crl_needs_refresh,
    generate_private_key,
    issue_crl,
    issue_smime_certificate,
)
from autoenroll.pki.crl import DEFAULT_CRL_VALIDITY, crl_builder
from checks import lint_crl  # noqa: E402

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def _pem(path, *objs) -> None:
    path.write_bytes(b"".join(o.public_bytes(serialization.Encoding.PEM) for o in objs))


def test_crl_lists_each_revoked_serial_with_time_and_reason(chain):
    entries = [
        RevokedEntry(0x1234, NOW - dt.timedelta(hours=1), "key_compromise"),
        RevokedEntry(0x5678, NOW - dt.timedelta(minutes=5), "superseded"),
        RevokedEntry(0x9ABC, NOW, "affiliation_changed"),
        RevokedEntry(0xDEF0, NOW, "cessation_of_operation"),
    ]
    crl = issue_crl(chain.issuing_backend, 7, entries, this_update=NOW)
    assert crl.issuer == chain.hierarchy.issuing_certificate.subject
    assert crl.is_signature_valid(chain.hierarchy.issuing_certificate.public_key())
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 7
    assert crl.last_update_utc == NOW and crl.next_update_utc == NOW + DEFAULT_CRL_VALIDITY
    for entry in entries:
        revoked = crl.get_revoked_certificate_by_serial_number(entry.serial)
        assert revoked.revocation_date_utc == entry.revoked_at
        assert revoked.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags[entry.reason]


def test_unspecified_reason_is_written_as_no_reason_code(chain):
    crl = issue_crl(chain.issuing_backend, 1, [RevokedEntry(42, NOW, "unspecified")])
    revoked = crl.get_revoked_certificate_by_serial_number(42)
    assert len(revoked.extensions) == 0  # RFC 5280 5.3.1 / CABF: no reasonCode for unspecified


@pytest.mark.parametrize("reasons", [(), ("unspecified", "key_compromise", "superseded", "affiliation_changed")])
def test_crl_passes_pkilint_cabf_crl_profile(chain, reasons):
    entries = [RevokedEntry(1000 + i, NOW, r) for i, r in enumerate(reasons)]
    crl = issue_crl(chain.issuing_backend, 3, entries)
    assert lint_crl(crl.public_bytes(serialization.Encoding.DER)) == []


def test_openssl_verify_crl_check_accepts_valid_and_rejects_revoked_certificate(chain, tmp_path, openssl):
    h = chain.hierarchy
    other_key = generate_private_key("ec-p256")
    revoked_cert = issue_smime_certificate(
        chain.issuing_backend, other_key.public_key(), "gone@test.com", h.issuing_urls
    )
    crl = issue_crl(chain.issuing_backend, 2, [RevokedEntry(revoked_cert.serial_number, NOW, "key_compromise")])
    root_crl = issue_crl(chain.root_backend, 1, [])
    _pem(tmp_path / "crls.pem", crl, root_crl)
    _pem(tmp_path / "revoked.pem", revoked_cert)

    def verify(cert_path):
        return openssl(
            "verify",
            "-crl_check_all",
            "-CRLfile",
            tmp_path / "crls.pem",
            "-CAfile",
            h.root_cert_path,
            "-untrusted",
            h.issuing_cert_path,
            cert_path,
        )

    good = verify(chain.leaf_cert_path)
    assert good.returncode == 0, good.stdout + good.stderr
    bad = verify(tmp_path / "revoked.pem")
    assert bad.returncode != 0
    assert "certificate revoked" in bad.stdout + bad.stderr


def test_crl_facts_read_back_number_dates_and_entries(chain):
    crl = issue_crl(chain.issuing_backend, 99, [RevokedEntry(5, NOW)], this_update=NOW)
    facts = crl_facts(crl.public_bytes(serialization.Encoding.DER))
    assert (facts.number, facts.entries, facts.this_update) == (99, 1, NOW)
    assert facts.issuer == chain.hierarchy.issuing_certificate.subject.rfc4514_string()
    assert len(facts.sha256) == 64 and facts.size > 0


def test_crl_of_ten_thousand_entries_is_signed_and_complete(chain):
    entries = [RevokedEntry(10**20 + i, NOW, "superseded") for i in range(10_000)]
    crl = issue_crl(chain.issuing_backend, 1, entries)
    assert len(crl) == 10_000
    assert crl.get_revoked_certificate_by_serial_number(10**20 + 9_999) is not None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"number": -1}, "CRL number"),
        ({"number": 2**160}, "CRL number"),
        ({"validity": dt.timedelta(days=11)}, "10 days"),
        ({"entries": [RevokedEntry(1, NOW), RevokedEntry(1, NOW)]}, "listed twice"),
        ({"entries": [RevokedEntry(1, NOW, "certificate_hold")]}, "unsupported revocation reason"),
        ({"this_update": dt.datetime(2030, 1, 1)}, "timezone-aware"),  # noqa: DTZ001
    ],
)
def test_bad_crl_input_is_refused_with_a_clear_error(chain, kwargs, message):
    args = {"number": 1, "entries": []} | kwargs
    with pytest.raises(CRLError, match=message):
        crl_builder(chain.hierarchy.issuing_certificate, args.pop("number"), args.pop("entries"), **args)


def test_crl_is_due_for_regeneration_after_half_its_lifetime():
    this_update = NOW - dt.timedelta(days=3)
    assert not crl_needs_refresh(this_update, this_update + dt.timedelta(days=7), NOW)
    assert crl_needs_refresh(this_update, this_update + dt.timedelta(days=7), NOW + dt.timedelta(days=1))
