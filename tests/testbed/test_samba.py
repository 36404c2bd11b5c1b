"""The Samba AD DC test bed really provides what the rest of the suite relies on."""

from __future__ import annotations

import re
import secrets
import socket
import ssl
import subprocess

import gssapi
import ldap3
import pytest
from cryptography import x509

from autoenroll.testbed.samba import DC_FQDN, USERS, SambaDC, TestbedError

UF_ACCOUNTDISABLE = 0x2


def _user(conn: ldap3.Connection, dc: SambaDC, sam: str) -> ldap3.Entry:
    conn.search(
        dc.base_dn,
        f"(&(objectClass=user)(sAMAccountName={sam}))",
        attributes=["mail", "cn", "proxyAddresses", "userAccountControl", "givenName", "sn"],
    )
    assert len(conn.entries) == 1, conn.result
    return conn.entries[0]


def test_dc_answers_ldaps_with_a_cert_from_the_pinned_ca_covering_ip_and_name(samba_ad: SambaDC) -> None:
    ctx = ssl.create_default_context(cafile=str(samba_ad.tls_ca))
    for server_name in (samba_ad.ip, DC_FQDN):  # both verified by Python's own hostname check
        with (
            socket.create_connection((samba_ad.ip, 636), timeout=10) as raw,
            ctx.wrap_socket(raw, server_hostname=server_name) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    cert = x509.load_der_x509_certificate(der)
    assert cert.serial_number > 0
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert DC_FQDN in san.get_values_for_type(x509.DNSName)
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == [samba_ad.ip]


def test_kinit_works_for_user1(samba_ad: SambaDC) -> None:
    ccache = samba_ad.kinit("user1")
    out = subprocess.run(
        ["klist", ccache], env=samba_ad.env(ccache), capture_output=True, text=True, timeout=10, check=True
    ).stdout
    assert "Default principal: user1@TEST.COM" in out


def test_kinit_of_disabled_user4_fails_with_revoked(samba_ad: SambaDC) -> None:
    with pytest.raises(TestbedError, match="revoked"):
        samba_ad.kinit("user4")


def test_keytab_holds_only_aes_keys_for_http_service(samba_ad: SambaDC) -> None:
    assert samba_ad.keytab.stat().st_mode & 0o777 == 0o600
    out = subprocess.run(
        ["klist", "-kte", str(samba_ad.keytab)],
        env=samba_ad.env(),
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout
    enctypes = re.findall(r"\sHTTP/ccm\.test\.com@TEST\.COM \(([^)]+)\)", out)
    assert enctypes, out
    assert set(enctypes) == {"aes256-cts-hmac-sha1-96", "aes128-cts-hmac-sha1-96"}, out


def test_service_account_simple_bind_over_ldaps_reads_mail_and_disabled_flag(samba_ad: SambaDC) -> None:
    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(samba_ad.tls_ca), valid_names=[DC_FQDN])
    server = ldap3.Server(samba_ad.ip, port=636, use_ssl=True, tls=tls, connect_timeout=10)
    conn = ldap3.Connection(server, user="ccm@test.com", password=samba_ad.service_account_password, receive_timeout=30)
    assert conn.bind(), conn.result
    try:
        user1 = _user(conn, samba_ad, "user1")
        assert user1.mail.value == "user1@test.com"
        assert user1.cn.value == "User One"
        assert (user1.givenName.value, user1.sn.value) == ("User", "One")
        assert set(user1.proxyAddresses.values) == {"SMTP:user1@test.com", "smtp:u1.alias@test.com"}
        assert not int(user1.userAccountControl.value) & UF_ACCOUNTDISABLE

        assert _user(conn, samba_ad, "user3").mail.value is None
        assert int(_user(conn, samba_ad, "user4").userAccountControl.value) & UF_ACCOUNTDISABLE
    finally:
        conn.unbind()


def test_spnego_accept_in_process_yields_user1(samba_ad: SambaDC, monkeypatch: pytest.MonkeyPatch) -> None:
    ccache = samba_ad.kinit("user1")
    for key, value in samba_ad.env(ccache).items():
        monkeypatch.setenv(key, value)
    spnego = gssapi.OID.from_int_seq("1.3.6.1.5.5.2")
    target = gssapi.Name("HTTP@ccm.test.com", gssapi.NameType.hostbased_service)
    init_creds = gssapi.Credentials(usage="initiate", store={"ccache": ccache})
    acc_creds = gssapi.Credentials(usage="accept", store={"keytab": str(samba_ad.keytab)})

    initiator = gssapi.SecurityContext(name=target, creds=init_creds, usage="initiate", mech=spnego)
    acceptor = gssapi.SecurityContext(creds=acc_creds, usage="accept")
    reply = acceptor.step(initiator.step())
    assert acceptor.complete
    if reply:
        initiator.step(reply)
    assert str(acceptor.initiator_name) == "user1@TEST.COM"
    assert str(acceptor.target_name) == "HTTP/ccm.test.com@TEST.COM"


def test_add_user_at_runtime_then_kinit_works(samba_ad: SambaDC) -> None:
    sam = f"rt{secrets.token_hex(4)}"
    dn = samba_ad.add_user(sam, "Runtime!Pw1", mail=f"{sam}@test.com")
    assert dn == f"CN={sam},{samba_ad.users_dn}"
    assert samba_ad.kinit(sam).endswith(f"/cc/{sam}")


def test_set_attribute_and_disable_user_are_visible(samba_ad: SambaDC) -> None:
    sam = f"rt{secrets.token_hex(4)}"
    samba_ad.add_user(sam, "Runtime!Pw2", cn=f"Runtime {sam}")
    samba_ad.set_attribute(sam, "mail", f"{sam}@example.test")
    samba_ad.disable_user(sam)
    conn = samba_ad.ldap_admin()
    try:
        entry = _user(conn, samba_ad, sam)
        assert entry.mail.value == f"{sam}@example.test"
        assert int(entry.userAccountControl.value) & UF_ACCOUNTDISABLE
    finally:
        conn.unbind()
    with pytest.raises(TestbedError, match="revoked"):
        samba_ad.kinit(sam)


def test_template_users_match_the_constants() -> None:
    assert USERS["user1"].principal == "user1@TEST.COM"
    assert USERS["user1"].dn == "CN=User One,CN=Users,DC=test,DC=com"
    assert USERS["user3"].mail is None
    assert USERS["user4"].disabled
