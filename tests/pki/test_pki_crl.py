"""CRLs built by the PKI layer, checked by OpenSSL and pkilint's RFC 5280 + CA/B Forum CRL linter."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoenroll.pki import (
    CRLError,
    RevokedEntry,
    crl_facts,
    crl_needs_refresh,
    generate_private_key,
    issue_crl,
    issue_smime_certificate,
)
from autoenroll.pki.crl import DEFAULT_CRL_VALIDITY, REVOCATION_REASONS, crl_builder, crl_entry, reason_flag
from autoenroll.pki.keys import signature_hash_for_key, throwaway_key
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
    crl = x509.load_der_x509_crl(issue_crl(chain.issuing_backend, 7, entries, this_update=NOW))
    assert crl.issuer == chain.hierarchy.issuing_certificate.subject
    assert crl.is_signature_valid(chain.hierarchy.issuing_certificate.public_key())
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 7
    assert crl.last_update_utc == NOW and crl.next_update_utc == NOW + DEFAULT_CRL_VALIDITY
    for entry in entries:
        revoked = crl.get_revoked_certificate_by_serial_number(entry.serial)
        assert revoked.revocation_date_utc == entry.revoked_at
        assert revoked.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags[entry.reason]


def test_unspecified_reason_is_written_as_no_reason_code(chain):
    crl = x509.load_der_x509_crl(issue_crl(chain.issuing_backend, 1, [RevokedEntry(42, NOW, "unspecified")]))
    revoked = crl.get_revoked_certificate_by_serial_number(42)
    assert len(revoked.extensions) == 0  # RFC 5280 5.3.1 / CABF: no reasonCode for unspecified


@pytest.mark.parametrize("reasons", [(), ("unspecified", "key_compromise", "superseded", "affiliation_changed")])
def test_crl_passes_pkilint_cabf_crl_profile(chain, reasons):
    entries = [RevokedEntry(1000 + i, NOW, r) for i, r in enumerate(reasons)]
    crl = x509.load_der_x509_crl(issue_crl(chain.issuing_backend, 3, entries))
    assert lint_crl(crl.public_bytes(serialization.Encoding.DER)) == []


def test_openssl_verify_crl_check_accepts_valid_and_rejects_revoked_certificate(chain, tmp_path, openssl):
    h = chain.hierarchy
    other_key = generate_private_key("ec-p256")
    revoked_cert = issue_smime_certificate(
        chain.issuing_backend, other_key.public_key(), "gone@test.com", h.issuing_urls
    )
    crl = x509.load_der_x509_crl(
        issue_crl(chain.issuing_backend, 2, [RevokedEntry(revoked_cert.serial_number, NOW, "key_compromise")])
    )
    root_crl = x509.load_der_x509_crl(issue_crl(chain.root_backend, 1, []))
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
    der = issue_crl(chain.issuing_backend, 99, [RevokedEntry(5, NOW)], this_update=NOW)
    facts = crl_facts(der)
    assert facts == crl_facts(x509.load_der_x509_crl(der))
    assert (facts.number, facts.entries, facts.this_update, facts.size) == (99, 1, NOW, len(der))
    assert facts.issuer == chain.hierarchy.issuing_certificate.subject.rfc4514_string()
    assert len(facts.sha256) == 64 and facts.size > 0


def test_crl_of_ten_thousand_entries_is_signed_and_complete(chain):
    entries = [RevokedEntry(10**20 + i, NOW, "superseded") for i in range(10_000)]
    crl = x509.load_der_x509_crl(issue_crl(chain.issuing_backend, 1, entries))
    assert len(crl) == 10_000
    assert crl.get_revoked_certificate_by_serial_number(10**20 + 9_999) is not None


def _as_cryptography_builds_it(issuer, number, entries, distribution_point=None):
    """The TBS cryptography's own builder makes of the same header and entries."""
    builder = crl_builder(issuer, number, this_update=NOW, distribution_point=distribution_point)
    for entry in entries:
        revoked = x509.RevokedCertificateBuilder().serial_number(entry.serial).revocation_date(entry.revoked_at)
        if (flag := reason_flag(entry.reason)) is not None:
            revoked = revoked.add_extension(x509.CRLReason(flag), critical=False)
        builder = builder.add_revoked_certificate(revoked.build())
    key = throwaway_key("ec-p256")
    return builder.sign(key, signature_hash_for_key(key)).tbs_certlist_bytes


_ENTRIES = st.lists(
    st.builds(
        RevokedEntry,
        st.integers(1, 2**159 - 1),
        st.datetimes(dt.datetime(1950, 1, 1), dt.datetime(9999, 12, 31), timezones=st.just(dt.UTC)).map(
            lambda t: t.replace(microsecond=0)
        ),
        st.sampled_from(REVOCATION_REASONS),
    ),
    max_size=12,
    unique_by=lambda entry: entry.serial,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=_ENTRIES, distribution_point=st.sampled_from([None, "http://ccm.test.com/crl/smime/7.crl"]))
def test_entries_are_encoded_byte_for_byte_as_cryptography_encodes_them(chain, entries, distribution_point):
    """issue_crl encodes the entries itself (streaming, for a million of them): the TBS must be the one
    cryptography's builder makes, for any serial size (a high first bit needs a 0 octet), revocation
    time (UTCTime through 2049, GeneralizedTime after) and reason, for a full CRL and a partition."""
    if chain.key_type != "ec-p256":
        pytest.skip("the encoding does not depend on the CA's key type")
    crl = x509.load_der_x509_crl(
        issue_crl(chain.issuing_backend, 5, entries, this_update=NOW, distribution_point=distribution_point)
    )
    issuer = chain.hierarchy.issuing_certificate
    expected = _as_cryptography_builds_it(issuer, 5, entries, distribution_point)
    assert crl.tbs_certlist_bytes == expected
    assert [(r.serial_number, r.revocation_date_utc) for r in crl] == [(e.serial, e.revoked_at) for e in entries]
    # The same entries stored at revocation (crl_entry), some of them: the same TBS.
    mixed = [crl_entry(*e) if i % 2 else e for i, e in enumerate(entries)]
    again = issue_crl(chain.issuing_backend, 5, mixed, this_update=NOW, distribution_point=distribution_point)
    assert x509.load_der_x509_crl(again).tbs_certlist_bytes == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"number": -1}, "CRL number"),
        ({"number": 2**160}, "CRL number"),
        ({"validity": dt.timedelta(days=11)}, "10 days"),
        ({"entries": [RevokedEntry(1, NOW), RevokedEntry(1, NOW)]}, "listed twice"),
        ({"entries": [RevokedEntry(1, NOW, "certificate_hold")]}, "unsupported revocation reason"),
        ({"entries": [RevokedEntry(0, NOW)]}, "not a positive integer"),
        ({"entries": [RevokedEntry(2**159, NOW)]}, "at most 20 octets"),
        ({"entries": [RevokedEntry(1, dt.datetime(1949, 12, 31, tzinfo=dt.UTC))]}, "before 1950"),
        ({"entries": [RevokedEntry(1, dt.datetime(2030, 1, 1))]}, "timezone-aware"),  # noqa: DTZ001
        ({"this_update": dt.datetime(2030, 1, 1)}, "timezone-aware"),  # noqa: DTZ001
    ],
)
def test_bad_crl_input_is_refused_with_a_clear_error(chain, kwargs, message):
    args = {"number": 1, "entries": []} | kwargs
    with pytest.raises(CRLError, match=message):
        issue_crl(chain.issuing_backend, args.pop("number"), args.pop("entries"), **args)


def test_crl_is_due_for_regeneration_after_half_its_lifetime():
    this_update = NOW - dt.timedelta(days=3)
    assert not crl_needs_refresh(this_update, this_update + dt.timedelta(days=7), NOW)
    assert crl_needs_refresh(this_update, this_update + dt.timedelta(days=7), NOW + dt.timedelta(days=1))
