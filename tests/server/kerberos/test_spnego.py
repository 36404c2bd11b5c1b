"""HTTP Negotiate against the real Samba AD DC: real tickets from a python-gssapi initiator, real keytabs."""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import gssapi
import pytest
from django.db import connection
from django.test import Client

from autoenroll.server.kerberos import spnego
from autoenroll.server.kerberos.models import KerberosRealm, SeenAuthenticator
from autoenroll.testbed import samba

pytestmark = [pytest.mark.django_db, pytest.mark.urls("server.kerberos.spnego_urls")]

SPNEGO = gssapi.OID.from_int_seq("1.3.6.1.5.5.2")
LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
# A second service account with its own SPN and keytab: the "second customer" of guide 6.
SECOND_ACCOUNT = "svc-spnego2"
SECOND_HOST = "spnego2.test.com"


@pytest.fixture(scope="module")
def kerberos_env(samba_ad, tmp_path_factory):
    """What settings.py does at start-up, pointed at the DC's krb5.conf (the initiator needs its KDC)."""
    env = spnego.kerberos_environment(tmp_path_factory.mktemp("data"), base_config=str(samba_ad.krb5_conf))
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        yield env
    spnego.clear_caches()


@pytest.fixture(scope="module")
def second_keytab(samba_ad, tmp_path_factory) -> Path:
    """A second AES-only service account + keytab in the same DC, made the way `keytab commands` says."""
    samba_ad.add_user(
        SECOND_ACCOUNT,
        "Passw0rd!Spn2x",
        servicePrincipalName=[f"HTTP/{SECOND_HOST}"],
        **{"msDS-SupportedEncryptionTypes": str(samba.AES_ENCTYPES)},
    )
    keytab = tmp_path_factory.mktemp("kt2") / "second.keytab"
    proc = subprocess.run(
        [
            "samba-tool",
            "domain",
            "exportkeytab",
            str(keytab),
            f"--principal=HTTP/{SECOND_HOST}",
            "-s",
            str(samba_ad.smb_conf),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    keytab.chmod(0o600)
    return keytab


@pytest.fixture(scope="module")
def user1_creds(samba_ad, kerberos_env) -> gssapi.Credentials:
    return gssapi.Credentials(usage="initiate", store={"ccache": samba_ad.kinit("user1")})


@pytest.fixture
def ticket(user1_creds):
    """Make a fresh Negotiate token for a host-based service name; returns (base64 token, initiator context)."""

    def make(host: str = "ccm.test.com") -> tuple[str, gssapi.SecurityContext]:
        ctx = gssapi.SecurityContext(
            name=gssapi.Name(f"HTTP@{host}", gssapi.NameType.hostbased_service),
            creds=user1_creds,
            usage="initiate",
            mech=SPNEGO,
            flags=gssapi.RequirementFlag.mutual_authentication | gssapi.RequirementFlag.out_of_sequence_detection,
        )
        return base64.b64encode(ctx.step()).decode(), ctx

    return make


@pytest.fixture
def kerberos_log(caplog):
    """caplog for "autoenroll.kerberos" (the settings' "autoenroll" logger does not propagate to root)."""
    logger = logging.getLogger("autoenroll.kerberos")
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.DEBUG, logger="autoenroll.kerberos")
    yield caplog
    logger.removeHandler(caplog.handler)


def negotiate(token: str) -> dict[str, str]:
    return {"Authorization": f"Negotiate {token}"}


def failures(log) -> list[logging.LogRecord]:
    """The failure lines, each once (caplog may see a record through root and through our handler)."""
    unique = {id(r): r for r in log.records if r.name == "autoenroll.kerberos" and hasattr(r, "kerberos_failure")}
    return list(unique.values())


def assert_unauthorized(response) -> None:
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Negotiate"
    assert response["Content-Type"].startswith("text/plain")
    assert response.content.decode() == "This request requires HTTP authentication ()."


def test_request_without_authorization_gets_401_negotiate_and_the_guides_text(client, realm, kerberos_env):
    assert_unauthorized(client.get("/whoami"))


def test_garbage_token_is_refused_as_malformed_and_the_token_is_not_logged(client, realm, kerberos_env, kerberos_log):
    garbage = base64.b64encode(b"\x60\x05garbage-not-a-gss-token").decode()
    assert_unauthorized(client.get("/whoami", headers=negotiate(garbage)))
    assert_unauthorized(client.get("/whoami", headers=negotiate("***not base64***")))
    records = failures(kerberos_log)
    assert [r.kerberos_failure for r in records] == ["malformed", "malformed"]
    assert all("malformed token" in r.getMessage() and garbage not in r.getMessage() for r in records)


def test_valid_ticket_authenticates_user1_and_returns_a_mutual_auth_token(client, realm, ticket, kerberos_log):
    token, initiator = ticket()
    response = client.get("/whoami", headers=negotiate(token))
    assert response.status_code == 200, response.content
    assert response.json() == {"principal": "user1@TEST.COM", "realm": "test.com", "method": "GET"}
    scheme, _, answer = response["WWW-Authenticate"].partition(" ")
    assert scheme == "Negotiate" and answer
    initiator.step(base64.b64decode(answer))  # the client verifies the server: it holds the service key
    assert initiator.complete
    assert token not in kerberos_log.text


def test_post_with_a_ticket_needs_no_csrf_token(realm, ticket):
    token, _ = ticket()
    response = Client(enforce_csrf_checks=True).post(
        "/whoami", data=b"csr", content_type="application/pkcs10", headers=negotiate(token)
    )
    assert response.status_code == 200, response.content
    assert response.json()["method"] == "POST"


def test_replayed_ticket_is_refused_and_logged_as_replay(client, realm, ticket, kerberos_log):
    token, _ = ticket()
    assert client.get("/whoami", headers=negotiate(token)).status_code == 200
    assert_unauthorized(client.get("/whoami", headers=negotiate(token)))
    (record,) = failures(kerberos_log)
    assert record.kerberos_failure == "replay"
    assert "replay" in record.getMessage() and record.levelno == logging.WARNING
    assert token not in record.getMessage()


def test_two_realms_are_served_at_once_each_with_its_own_keytab(client, realm, second_keytab, ticket):
    KerberosRealm.objects.create(
        domain="branch.test.com",
        keytab_path=str(second_keytab),
        service_principal=f"HTTP/{SECOND_HOST}@{samba.REALM}",
    )
    first, _ = ticket("ccm.test.com")
    second, _ = ticket(SECOND_HOST)
    assert client.get("/whoami", headers=negotiate(second)).json()["realm"] == "branch.test.com"
    assert client.get("/whoami", headers=negotiate(first)).json()["realm"] == "test.com"


def test_the_ticket_names_its_service_in_clear_so_the_realm_is_chosen_without_trying(ticket, second_keytab):
    token, _ = ticket(SECOND_HOST)
    assert spnego.ticket_service(base64.b64decode(token)) == f"HTTP/{SECOND_HOST}@{samba.REALM}"
    assert spnego.ticket_service(b"NTLMSSP\x00\x01\x00\x00\x00") is None


def test_ticket_for_an_spn_whose_keytab_is_not_configured_is_refused_as_unknown_spn(
    client, realm, second_keytab, ticket, kerberos_log
):
    token, _ = ticket(SECOND_HOST)  # the DC knows the SPN, but only test.com's keytab is configured here
    assert_unauthorized(client.get("/whoami", headers=negotiate(token)))
    (record,) = failures(kerberos_log)
    assert record.kerberos_failure == "unknown_spn"
    assert "unknown SPN" in record.getMessage() and f"HTTP/{SECOND_HOST}@TEST.COM" in record.getMessage()


def test_a_realm_whose_keytab_is_missing_does_not_break_the_others(client, realm, ticket, tmp_path):
    KerberosRealm.objects.create(
        domain="de.com", keytab_path=str(tmp_path / "gone.keytab"), service_principal="HTTP/certmgr.de.com@DE.COM"
    )
    token, _ = ticket()
    assert client.get("/whoami", headers=negotiate(token)).json()["principal"] == "user1@TEST.COM"


def test_principal_of_another_realm_than_the_accepting_realm_is_refused(client, samba_ad, ticket, kerberos_log):
    # The keytab decrypts the ticket, but this realm row says its users live in OTHER.COM: user1@TEST.COM is
    # then a cross-realm principal and must not be let in under this realm.
    KerberosRealm.objects.create(
        domain="other.com", keytab_path=str(samba_ad.keytab), service_principal="HTTP/ccm.test.com@OTHER.COM"
    )
    token, _ = ticket()
    assert_unauthorized(client.get("/whoami", headers=negotiate(token)))
    (record,) = failures(kerberos_log)
    assert "cross-realm principal user1@TEST.COM" in record.getMessage()


def test_without_any_realm_configured_every_ticket_is_refused(client, ticket, kerberos_log):
    token, _ = ticket()
    assert_unauthorized(client.get("/whoami", headers=negotiate(token)))
    assert [r.kerberos_failure for r in failures(kerberos_log)] == ["no_realm"]


# ---- clock skew: the acceptor runs in a subprocess whose clock libfaketime moves 20 minutes ahead ----------

_ACCEPTOR = """
import base64, json, sys
import gssapi
from autoenroll.server.kerberos import spnego
creds = gssapi.Credentials(usage="accept", store={"keytab": sys.argv[1]})
try:
    principal, _, _ = spnego.accept_token(base64.b64decode(sys.stdin.read()), creds)
    print(json.dumps({"principal": principal}))
except spnego.NegotiateError as exc:
    print(json.dumps({"kind": exc.kind, "reason": exc.reason}))
"""


def _accept_in_the_future(token: str, keytab: Path, env: dict[str, str]) -> dict[str, str]:
    proc = subprocess.run(
        [sys.executable, "-c", _ACCEPTOR, str(keytab)],
        input=token,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **env, "LD_PRELOAD": str(LIBFAKETIME), "FAKETIME": "+20m"},
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.skipif(not LIBFAKETIME.exists(), reason="libfaketime is not installed")
def test_clock_skew_beyond_the_configured_limit_is_refused_as_skew_and_a_larger_limit_accepts(
    samba_ad, ticket, kerberos_env, tmp_path
):
    token, _ = ticket()
    assert _accept_in_the_future(token, samba_ad.keytab, kerberos_env) == {
        "kind": "skew",
        "reason": "Clock skew too great",
    }
    # the setting is honoured: with a 30-minute limit the same skew is accepted
    lenient = spnego.kerberos_environment(tmp_path, clockskew=1800, base_config=str(samba_ad.krb5_conf))
    token, _ = ticket()
    assert _accept_in_the_future(token, samba_ad.keytab, lenient) == {"principal": "user1@TEST.COM"}


def test_kerberos_environment_puts_clockskew_first_and_the_replay_cache_in_the_data_dir(tmp_path):
    env = spnego.kerberos_environment(tmp_path, clockskew=120, base_config="/etc/krb5.conf")
    ours = tmp_path / "krb5-acceptor.conf"
    assert env == {"KRB5RCACHEDIR": str(tmp_path / "rcache"), "KRB5_CONFIG": f"{ours}:/etc/krb5.conf"}
    assert "clockskew = 120" in ours.read_text()
    assert (tmp_path / "rcache").stat().st_mode & 0o777 == 0o700
    # idempotent: calling it again on its own result does not stack the file
    assert spnego.kerberos_environment(tmp_path, 120, base_config=env["KRB5_CONFIG"]) == env


def test_when_the_ticket_cannot_be_read_every_realms_keytab_is_tried(
    client, realm, second_keytab, ticket, tmp_path, monkeypatch
):
    # e.g. a client whose SPNEGO token puts another mechanism first: no AP-REQ to read the service name from
    monkeypatch.setattr(spnego, "ticket_service", lambda token: None)
    KerberosRealm.objects.create(
        domain="a-missing.com", keytab_path=str(tmp_path / "gone"), service_principal="HTTP/x.a-missing.com@A.COM"
    )
    KerberosRealm.objects.create(
        domain="branch.test.com", keytab_path=str(second_keytab), service_principal=f"HTTP/{SECOND_HOST}@TEST.COM"
    )
    token, _ = ticket()
    assert client.get("/whoami", headers=negotiate(token)).json() == {
        "principal": "user1@TEST.COM",
        "realm": "test.com",
        "method": "GET",
    }


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the shared replay cache is PostgreSQL's (several hosts)")
def test_a_token_replayed_to_another_server_of_the_cluster_is_refused(client, realm, ticket, kerberos_env, tmp_path):
    """Another host has another MIT replay cache: switching to a fresh one stands for it. The database the
    servers share has seen the token, and refuses it."""
    token, _ = ticket()
    assert client.get("/whoami", headers=negotiate(token)).status_code == 200
    other_host = tmp_path / "rcache-of-another-host"
    other_host.mkdir()
    saved = os.environ["KRB5RCACHEDIR"]
    os.environ["KRB5RCACHEDIR"] = str(other_host)
    try:
        assert client.get("/whoami", headers=negotiate(token)).status_code == 401
    finally:
        os.environ["KRB5RCACHEDIR"] = saved
    assert SeenAuthenticator.objects.count() == 1
