"""The LDAP client against the real Samba AD DC."""

import dataclasses
import ipaddress
import socket
import subprocess

import pytest

from autoenroll.server.directory import ldap
from autoenroll.server.directory.ldap import DirectoryClient, DirectoryError, LDAPSettings
from autoenroll.testbed import samba

pytestmark = pytest.mark.django_db


def _over(ad_server, transport: str):
    """The AD server's settings over StartTLS (read through libldap) or LDAPS (ldap3)."""
    ldaps = transport == "ldaps"
    return dataclasses.replace(ad_server.ldap_settings(), use_ssl=ldaps, port=636 if ldaps else 389)


@pytest.fixture
def client(ad_server):
    c = DirectoryClient(ad_server.ldap_settings())
    yield c
    c.close()


def test_finds_a_user_by_principal_with_mail_cn_and_dn(client):
    user = client.find_user("user1@TEST.COM")
    assert user.mail == "user1@test.com"
    assert user.cn == samba.USERS["user1"].cn
    assert user.dn == samba.USERS["user1"].dn
    assert user.sam_account_name == "user1" and user.enabled


def test_user_without_mail_and_disabled_user(client):
    assert client.find_user("user3@TEST.COM").mail == ""
    assert client.find_user("user4@TEST.COM").enabled is False


def test_unknown_user_is_none(client):
    assert client.find_user("nosuch@TEST.COM") is None


@pytest.mark.parametrize("hostile", ["*", "user*", "*)(sAMAccountName=*", "user1)(|(mail=*", "\\2a", "user1\x00"])
def test_filter_values_are_escaped(client, hostile):
    assert client.find_user(f"{hostile}@TEST.COM") is None


def test_connection_is_reused(client):
    client.find_user("user1@TEST.COM")
    client.find_user("user2@TEST.COM")
    assert client.opened == 1


def test_concurrent_searches_each_get_a_connection_and_keep_it(client):
    import threading

    start = threading.Barrier(4)
    found = []

    def search():
        start.wait(timeout=10)
        found.append(client.find_user("user1@TEST.COM").mail)

    threads = [threading.Thread(target=search) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert found == ["user1@test.com"] * 4
    opened = client.opened
    assert 1 <= opened <= 4
    client.find_user("user2@TEST.COM")
    assert client.opened == opened  # kept for the next search


def test_a_changed_password_opens_new_connections_and_no_password_is_a_cache_key(ad_server):
    from dataclasses import replace

    from autoenroll.server.directory import ldap

    first = ldap.client_for(ad_server.pk, ad_server.ldap_settings())
    assert ldap.client_for(ad_server.pk, ad_server.ldap_settings()) is first
    changed = ldap.client_for(ad_server.pk, replace(ad_server.ldap_settings(), password="new"))
    assert changed is not first and changed.settings.password == "new"


def test_verify_reports_round_trip_and_clock_skew(client):
    report = client.verify()
    assert report.round_trip_ms > 0
    assert report.clock_skew_seconds is not None and abs(report.clock_skew_seconds) < 5


def test_verify_names_the_certificate_the_dc_presented(client, samba_ad):
    """Which DC answered: an admin who verified against the wrong DC sees another subject and fingerprint."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    dc = client.verify().dc_certificate
    expected_issuer = x509.load_pem_x509_certificate(samba_ad.tls_ca.read_bytes()).subject.rfc4514_string()
    assert dc.subject.startswith("CN=")
    assert dc.issuer == expected_issuer
    served = subprocess.run(
        ["openssl", "s_client", "-connect", f"{samba_ad.ip}:636", "-showcerts"],
        input="", capture_output=True, text=True, timeout=30,
    ).stdout  # fmt: skip
    leaf = x509.load_pem_x509_certificates(served.encode())[0]
    assert dc.sha256 == leaf.fingerprint(hashes.SHA256()).hex(":").upper()


@pytest.mark.parametrize("transport", ["starttls", "ldaps"])
def test_wrong_password_fails_at_bind(ad_server, transport):
    settings = dataclasses.replace(_over(ad_server, transport), password="wrong")
    with pytest.raises(DirectoryError) as exc:
        DirectoryClient(settings).verify()
    assert exc.value.stage == "bind"


@pytest.mark.parametrize("transport", ["starttls", "ldaps"])
def test_wrong_base_dn_is_reported(ad_server, transport):
    settings = dataclasses.replace(_over(ad_server, transport), users_base_dn="CN=Nope,DC=test,DC=com")
    with pytest.raises(DirectoryError) as exc:
        DirectoryClient(settings).verify()
    assert exc.value.stage == "base_dn"


@pytest.mark.parametrize("transport", ["starttls", "ldaps"])
def test_untrusted_dc_certificate_is_refused(ad_server, ca_files, transport):
    settings = dataclasses.replace(_over(ad_server, transport), ca_pem=ca_files.root_cert_path.read_text())
    with pytest.raises(DirectoryError) as exc:
        DirectoryClient(settings).verify()
    assert exc.value.stage == "tls"


def test_ldaps_on_its_port(ad_server):
    settings = dataclasses.replace(ad_server.ldap_settings(), use_ssl=True, port=636)
    client = DirectoryClient(settings)
    assert client.find_user("user1@TEST.COM").mail == "user1@test.com"
    assert not client._libldap and len(client._idle[False]) == 1


@pytest.mark.parametrize("use_ssl", [True, False], ids=["LDAPS (ldap3)", "StartTLS (libldap)"])
def test_the_certificate_is_checked_for_the_configured_name_instead_of_the_address(ad_server, use_ssl):
    """An address its certificate does not name (a load balancer, a DC known by IP): `tls_server_name`."""
    base = dataclasses.replace(ad_server.ldap_settings(), use_ssl=use_ssl, port=636 if use_ssl else 389)
    named = DirectoryClient(dataclasses.replace(base, tls_server_name=samba.DC_FQDN))
    assert named._libldap is not use_ssl
    assert named.find_user("user1@TEST.COM").mail == "user1@test.com"


def test_over_starttls_a_certificate_without_the_configured_name_is_refused(ad_server):
    """(ldap3 accepts a certificate for the address connected to as well: the test DC's names its IP.)"""
    settings = dataclasses.replace(_over(ad_server, "starttls"), tls_server_name="other.test.com")
    with pytest.raises(DirectoryError) as exc:
        DirectoryClient(settings).verify()
    assert exc.value.stage == "tls"


def test_libldap_reads_the_pinned_ca_from_a_private_file_removed_with_the_client(ad_server):
    import os
    import stat

    client = DirectoryClient(ad_server.ldap_settings())
    path = client._ca_file
    assert client.find_user("user1@TEST.COM") is not None
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    client.close()
    assert not os.path.exists(path)


def test_a_logon_reads_ad_through_libldap(client):
    assert client._libldap
    client.find_user("user1@TEST.COM")
    assert len(client._idle[True]) == 1 and not client._idle[False]


def test_a_connection_libldap_refuses_to_take_is_closed(ad_server, monkeypatch):
    """The socket is opened in Python and handed to libldap: when libldap cannot take it, it is closed,
    not left open for the life of the worker."""
    import os

    from autoenroll.server.directory import ldap as directory_ldap

    def refuse(*args, **kwargs):
        raise directory_ldap.libldap.LDAPError("cannot initialise")

    client = DirectoryClient(ad_server.ldap_settings())
    client.find_user("user1@TEST.COM")  # anything opened once per process is open now
    client.close()
    open_before = len(os.listdir("/proc/self/fd"))
    monkeypatch.setattr(directory_ldap.libldap, "initialize", refuse)
    client = DirectoryClient(ad_server.ldap_settings())
    for _ in range(3):
        with pytest.raises(directory_ldap.libldap.LDAPError):
            client._open_libldap()
    client.close()
    assert len(os.listdir("/proc/self/fd")) == open_before


def test_no_bind_in_clear_unless_allowed(ad_server):
    """Samba refuses simple binds without TLS: with allow_plain_bind the refusal shows at bind."""
    settings = dataclasses.replace(ad_server.ldap_settings(), use_ssl=False, port=389, allow_plain_bind=True)
    with pytest.raises(DirectoryError) as exc:
        DirectoryClient(settings).verify()
    assert exc.value.stage == "bind"


def test_unresolvable_address_is_a_dns_error(ad_server):
    settings = dataclasses.replace(ad_server.ldap_settings(), address="no-such-dc.invalid")
    with pytest.raises(DirectoryError) as exc:
        DirectoryClient(settings).verify()
    assert exc.value.stage == "dns"


@pytest.mark.parametrize("transport", ["starttls", "ldaps"])
def test_an_address_outside_the_ad_networks_is_never_connected_to(ad_server, transport, monkeypatch):
    """AUTOENROLL_AD_NETWORKS: a Customer Admin's AD Server Address cannot make the server probe the
    network it runs in (Verify tells an open port from a closed one)."""
    settings = dataclasses.replace(_over(ad_server, transport), networks=(ipaddress.ip_network("10.0.0.0/8"),))
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("connected"))  # libldap's
    monkeypatch.setattr(socket.socket, "connect", lambda *a, **k: pytest.fail("connected"))  # ldap3's
    with pytest.raises(DirectoryError) as exc:
        DirectoryClient(settings).verify()
    assert exc.value.stage == "address"
    assert str(exc.value) == f"address: {settings.address} is outside the networks AD servers may be in: 10.0.0.0/8"


@pytest.mark.parametrize(
    ("networks", "refused"),
    [
        ("::/0", True),  # an IPv4-mapped address is the IPv4 address it maps
        ("127.0.0.0/8", False),
    ],
)
def test_an_ipv4_mapped_address_is_checked_as_the_ipv4_address(networks, refused, monkeypatch):
    monkeypatch.setattr(
        socket, "getaddrinfo", lambda *a, **k: [(socket.AF_INET6, 1, 6, "", ("::ffff:127.0.0.1", 389, 0, 0))]
    )
    settings = LDAPSettings("dc.example.com", 389, False, "", "", "", networks=(ipaddress.ip_network(networks),))
    if refused:
        with pytest.raises(DirectoryError, match="address: dc.example.com is outside"):
            ldap._resolve(settings)
    else:
        assert ldap._resolve(settings) == ["::ffff:127.0.0.1"]


def test_ldaps_checks_the_certificate_for_the_name_the_admin_gave_and_sends_it():
    """ldap3 checks its connection's own address too: the one a name resolved to, with AD networks set."""
    named = ldap._tls(LDAPSettings("dc1.test.com", 636, True, "", "", ""))
    assert (named.valid_names, named.sni) == (["dc1.test.com"], "dc1.test.com")
    by_address = ldap._tls(LDAPSettings("192.0.2.1", 636, True, "", "", "", tls_server_name="dc1.test.com"))
    assert (by_address.valid_names, by_address.sni) == (["dc1.test.com"], "dc1.test.com")
    no_name = ldap._tls(LDAPSettings("192.0.2.1", 636, True, "", "", ""))
    assert (no_name.valid_names, no_name.sni) == (["192.0.2.1"], None)  # an address is no server name


@pytest.mark.parametrize("transport", ["starttls", "ldaps"])
def test_a_name_is_connected_to_at_the_address_that_was_checked(ad_server, samba_ad, transport, monkeypatch):
    """A name that resolves into the networks once and elsewhere afterwards (DNS rebinding) still leads to
    the address checked; the DC's certificate is checked for the name."""
    real = socket.getaddrinfo
    answers = iter([samba_ad.ip])

    def rebinding(host, *args, **kwargs):
        if host == samba.DC_FQDN:
            host = next(answers, "10.9.9.9")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    settings = dataclasses.replace(
        _over(ad_server, transport),
        address=samba.DC_FQDN,
        tls_server_name="",
        networks=(ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network(f"{samba_ad.ip}/32")),
    )
    client = DirectoryClient(settings)
    try:
        assert client.find_user("user1@TEST.COM").mail == "user1@test.com"
    finally:
        client.close()


@pytest.mark.parametrize("transport", ["starttls", "ldaps"])
def test_a_name_with_ad_networks_set_is_tried_at_each_allowed_address_it_resolves_to(
    ad_server, samba_ad, transport, monkeypatch
):
    """A DC's name with two addresses in the networks, the first not answering (a DC down, a stale DNS
    record): the second serves, as it does without the setting; one outside the networks is never tried."""
    real = socket.getaddrinfo
    dead, outside = "127.0.0.254", "10.9.9.9"  # nothing listens on the first; the second is not allowed

    def two_records(host, *args, **kwargs):
        if host != samba.DC_FQDN:
            return real(host, *args, **kwargs)
        return [info for ip in (outside, dead, samba_ad.ip) for info in real(ip, *args, **kwargs)]

    monkeypatch.setattr(socket, "getaddrinfo", two_records)
    settings = dataclasses.replace(
        _over(ad_server, transport),
        address=samba.DC_FQDN,
        tls_server_name="",
        networks=(ipaddress.ip_network("127.0.0.0/8"),),
    )
    assert ldap._resolve(settings) == [dead, samba_ad.ip]
    client = DirectoryClient(settings)
    try:
        assert client.find_user("user1@TEST.COM").mail == "user1@test.com"
    finally:
        client.close()
    only_dead = dataclasses.replace(settings, networks=(ipaddress.ip_network(f"{dead}/32"),))
    with pytest.raises(DirectoryError) as exc:
        DirectoryClient(only_dead).verify()
    assert exc.value.stage == "tcp"


@pytest.mark.parametrize("transport", ["starttls", "ldaps"])
def test_closed_port_is_a_tcp_error(ad_server, transport):
    settings = dataclasses.replace(_over(ad_server, transport), port=1)
    with pytest.raises(DirectoryError) as exc:
        DirectoryClient(settings).verify()
    assert exc.value.stage == "tcp"


@pytest.mark.parametrize("use_ssl", [False, True], ids=["StartTLS (libldap)", "LDAPS (ldap3)"])
def test_a_frozen_dc_costs_one_timeout_then_syncs_fail_at_once_and_it_is_used_again_within_a_second(
    ad_server, samba_ad, use_ssl
):
    """The issue's hung DC (SIGSTOP): syncs in flight give up after the timeout (error 13, well under
    the agent's 40 s); later ones fail at once instead of each waiting; after SIGCONT the next probe
    (one a second) finds it answering and every sync works again, without a restart."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    from autoenroll.protocol import EnrollmentError
    from autoenroll.server.directory.sync import read_user

    def timed_sync() -> tuple[float, int]:
        started = time.monotonic()
        try:
            read_user(ad_server, "user1@TEST.COM")
            code = 0
        except EnrollmentError as exc:
            code = exc.code
        return time.monotonic() - started, code

    ad_server.use_ssl, ad_server.port = use_ssl, 636 if use_ssl else 389
    ad_server.save()
    assert timed_sync()[1] == 0
    with samba_ad.frozen():
        with ThreadPoolExecutor(6) as pool:
            in_flight = list(pool.map(lambda _: timed_sync(), range(6)))
        assert all(code == 13 and seconds < 15 for seconds, code in in_flight), in_flight
        after = [timed_sync() for _ in range(5)]
        assert all(code == 13 and seconds < 0.5 for seconds, code in after), after
    resumed = time.monotonic()
    while timed_sync()[1] != 0:
        assert time.monotonic() - resumed < 3, "the DC answers again but syncs still fail"
        time.sleep(0.05)
    assert time.monotonic() - resumed < 1.5
