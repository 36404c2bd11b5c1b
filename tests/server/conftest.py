"""Fixtures for the server's tests: a CA on disk once per session, a customer wired to the real AD DC."""

from __future__ import annotations

import os

import pytest
from django.conf import settings as django_settings

from autoenroll import pki
from autoenroll.server.certificates import authority
from autoenroll.server.directory.models import ADServer
from autoenroll.server.kerberos.models import KerberosRealm
from autoenroll.server.tenants.models import Customer, EmailDomain, Organization
from autoenroll.testbed import samba


@pytest.fixture(scope="session")
def ca_files(tmp_path_factory) -> pki.Hierarchy:
    """The CA's files, made once: creating keys with a slow KDF per test would dominate the run."""
    config = django_settings.CONFIG
    return pki.init_hierarchy(
        tmp_path_factory.mktemp("ca"),
        config.ca_passphrase_bytes(),
        "ec-p256",
        name="Test",
        organization="autoenroll tests",
        publication_base_url=config.publication_url,
        root_slug="test-root",
        issuing_slug="test-smime",
    )


@pytest.fixture
def ca(db, ca_files):
    """The CA registered in this test's database; returns (root, issuing) rows."""
    h = ca_files
    return authority.register_hierarchy(
        "test", h.root_certificate, str(h.root_key_path), h.issuing_certificate, str(h.issuing_key_path)
    )


@pytest.fixture
def acme(db) -> Customer:
    customer = Customer.objects.create(uri="acme", name="ACME")
    EmailDomain.objects.create(customer=customer, name=samba.DOMAIN, authorized=True)
    return customer


@pytest.fixture
def ad_server(acme, samba_ad) -> ADServer:
    """The customer's default AD server: the real Samba DC, StartTLS with its CA pinned and its name checked
    (read through libldap, as `bench/storm.py` measures; LDAPS through ldap3 has tests of its own)."""
    return ADServer.objects.create(
        customer=acme,
        domain=samba.DOMAIN,
        address=samba_ad.ip,
        port=389,
        use_ssl=False,
        tls_ca_pem=samba_ad.tls_ca.read_text(),
        tls_server_name=samba.DC_FQDN,
        users_base_dn=samba.USERS_DN,
        login_dn=samba.SERVICE_ACCOUNT_DN,
        login_password=samba.SERVICE_ACCOUNT_PASSWORD,
        is_default=True,
    )


@pytest.fixture
def realm(acme, samba_ad) -> KerberosRealm:
    return KerberosRealm.objects.create(
        domain=samba.DOMAIN,
        keytab_path=str(samba_ad.keytab),
        service_principal=f"HTTP/ccm.test.com@{samba.REALM}",
        customer=acme,
    )


@pytest.fixture
def organization(acme, ad_server) -> Organization:
    org = Organization.objects.create(customer=acme, name="Sales", ad_server=ad_server)
    org.domains.set(acme.domains.all())
    return org


@pytest.fixture(scope="session")
def kerberos_env(samba_ad):
    """The test process is the agent and the server: both find the KDC and a private replay cache."""
    rcache = samba_ad.workdir / "rcache-server"
    rcache.mkdir(exist_ok=True)
    saved = {k: os.environ.get(k) for k in ("KRB5_CONFIG", "KRB5RCACHEDIR")}
    os.environ.update(KRB5_CONFIG=str(samba_ad.krb5_conf), KRB5RCACHEDIR=str(rcache))
    yield samba_ad
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
