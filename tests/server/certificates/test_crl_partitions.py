"""Partitioned CRLs (issue 17): with `crl_partitions` > 1 each new S/MIME certificate names one of several
small CRLs, each with an issuing distribution point; a revocation makes only its own partition's CRL (and
the CA's full CRL) stale."""

from __future__ import annotations

import io
from collections import defaultdict

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.core.management import call_command

from autoenroll.server.certificates import publication
from autoenroll.server.certificates.models import Certificate, CRLPartition, RevocationReason
from autoenroll.server.enrollment import lifecycle
from checks import run_openssl

pytestmark = [pytest.mark.django_db, pytest.mark.urls("autoenroll.server.certificates.urls")]

PARTITIONS = 4


@pytest.fixture
def partitioned(settings, ca):
    settings.CONFIG = settings.CONFIG.model_copy(update={"crl_partitions": PARTITIONS})
    return settings.CONFIG


def distribution_point(cert: Certificate) -> str:
    parsed = x509.load_pem_x509_certificate(cert.pem.encode())
    points = parsed.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert len(points) == 1
    return points[0].full_name[0].value


def path_of(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def served(client, path: str) -> x509.CertificateRevocationList:
    response = client.get(path)
    assert response.status_code == 200 and response["Content-Type"] == "application/pkix-crl", response.content
    return x509.load_der_x509_crl(response.content)


def by_partition(issue, count: int = 16) -> dict[int, list[Certificate]]:
    """`count` certificates, grouped by the partition each was issued into (at least two partitions)."""
    groups: dict[int, list[Certificate]] = defaultdict(list)
    for i in range(count):
        cert = issue(f"user{i}@test.com")
        groups[cert.crl_partition].append(cert)
    assert len(groups) >= 2, "16 certificates in one of 4 partitions: chance 4 × 4^-16"
    return groups


def test_each_certificate_names_its_partition_crl(partitioned, issue):
    cert = issue()
    assert cert.crl_partition in range(PARTITIONS)
    assert distribution_point(cert) == f"{partitioned.publication_url}/crl/test-smime/{cert.crl_partition}.crl"


def test_without_partitions_the_certificate_names_the_full_crl(settings, issue):
    cert = issue()
    assert cert.crl_partition is None
    assert distribution_point(cert) == f"{settings.CONFIG.publication_url}/crl/test-smime.crl"


def test_a_partition_crl_states_its_scope_and_passes_pkilint(partitioned, client, issue, crl_lint):
    cert = issue()
    lifecycle.revoke([cert], RevocationReason.KEY_COMPROMISE, by="test")
    response = client.get(path_of(distribution_point(cert)))
    crl = x509.load_der_x509_crl(response.content)
    scope = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
    assert scope.critical
    assert [name.value for name in scope.value.full_name] == [distribution_point(cert)]
    assert scope.value.only_contains_user_certs and not scope.value.only_contains_ca_certs
    assert crl.get_revoked_certificate_by_serial_number(int(cert.serial, 16)) is not None
    assert crl_lint(response.content) == []
    full = served(client, "/crl/test-smime.crl")  # the full CRL lists it too, and has no scope
    assert full.get_revoked_certificate_by_serial_number(int(cert.serial, 16)) is not None
    with pytest.raises(x509.ExtensionNotFound):
        full.extensions.get_extension_for_class(x509.IssuingDistributionPoint)


def test_a_revocation_makes_only_its_partition_and_the_full_crl_stale(partitioned, client, issue):
    groups = by_partition(issue)
    (hit, victims), (spared, _) = list(groups.items())[:2]
    served(client, "/crl/test-smime.crl")
    for index in groups:  # every partition's CRL exists once fetched
        served(client, f"/crl/test-smime/{index}.crl")
    full_before = publication.latest_crl(victims[0].ca).number
    spared_before = publication.latest_crl(victims[0].ca, spared).number

    lifecycle.revoke([victims[0]], RevocationReason.AFFILIATION_CHANGED, by="test")
    made = [(crl.partition, crl.entries) for crl in publication.refresh_crls() if crl.ca_id == victims[0].ca_id]
    assert made == [(None, 1), (hit, 1)]
    assert publication.latest_crl(victims[0].ca).number > full_before
    assert publication.latest_crl(victims[0].ca, spared).number == spared_before
    assert publication.refresh_crls() == []
    assert (
        served(client, f"/crl/test-smime/{spared}.crl").get_revoked_certificate_by_serial_number(
            int(victims[0].serial, 16)
        )
        is None
    )


def test_served_partition_never_misses_a_committed_revocation(partitioned, client, issue):
    cert = issue()
    before = served(client, path_of(distribution_point(cert)))
    lifecycle.revoke([cert], RevocationReason.SUPERSEDED, by="test")  # no watcher round since
    after = served(client, path_of(distribution_point(cert)))
    assert after.get_revoked_certificate_by_serial_number(int(cert.serial, 16)) is not None
    assert before.get_revoked_certificate_by_serial_number(int(cert.serial, 16)) is None


def test_openssl_checks_a_certificate_against_its_partition_crl(partitioned, client, issue, ca_files, tmp_path):
    """OpenSSL matches the CRL's issuing distribution point with the certificate's distribution point."""
    valid, revoked = issue("valid@test.com"), issue("leaver@test.com")
    lifecycle.revoke([revoked], RevocationReason.AFFILIATION_CHANGED, by="test")
    root_crl = served(client, "/crl/test-root.crl")

    def verify(cert: Certificate):
        pem = tmp_path / f"{cert.serial}.pem"
        pem.write_text(cert.pem)
        crls = tmp_path / f"{cert.serial}.crls.pem"
        crls.write_bytes(
            b"".join(
                c.public_bytes(serialization.Encoding.PEM)
                for c in (served(client, path_of(distribution_point(cert))), root_crl)
            )
        )
        return run_openssl(
            "verify", "-crl_check_all", "-CRLfile", crls, "-CAfile", ca_files.root_cert_path,
            "-untrusted", ca_files.issuing_cert_path, pem,
        )  # fmt: skip

    accepted = verify(valid)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    rejected = verify(revoked)
    assert rejected.returncode != 0 and "certificate revoked" in rejected.stdout + rejected.stderr


def test_only_partitions_in_use_are_published(partitioned, client, issue, settings):
    assert client.get("/crl/test-smime/3.crl").status_code == 200  # new certificates may name it
    assert client.get(f"/crl/test-smime/{PARTITIONS}.crl").status_code == 404  # nobody can make the CA sign more
    assert client.get("/crl/nope/0.crl").status_code == 404
    cert = issue()
    settings.CONFIG = settings.CONFIG.model_copy(update={"crl_partitions": 1})  # the admin turned them off
    assert client.get(path_of(distribution_point(cert))).status_code == 200  # issued certificates still name it


def test_crl_command_regenerates_the_partitions_too(partitioned, issue):
    cert = issue()
    lifecycle.revoke([cert], RevocationReason.KEY_COMPROMISE, by="test")
    out = io.StringIO()
    call_command("crl", "--ca", "test-smime", stdout=out)
    text = out.getvalue()
    assert f"partition   {cert.crl_partition}\n" in text and f"url         {distribution_point(cert)}\n" in text
    assert "url         http://ccm.test.com:8080/crl/test-smime.crl\n" in text


def test_each_revocation_counts_in_its_partition(partitioned, issue):
    group = max(by_partition(issue).values(), key=len)  # 16 in 4 partitions: one holds at least 4
    for cert in group[:3]:
        lifecycle.revoke([cert], RevocationReason.KEY_COMPROMISE, by="test")
    lifecycle.revoke(group[:3], RevocationReason.KEY_COMPROMISE, by="test")  # already revoked: no count
    row = CRLPartition.objects.get(ca=group[0].ca, index=group[0].crl_partition)
    assert row.revocation_generation == 3
    assert publication.publish_crl(group[0].ca, partition=row.index).entries == 3
