"""The guide's client errors 31-41, each caused for real and found in autoenroll.log with number and message."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess

import pytest

from autoenroll.protocol import CATALOGUE

pytestmark = pytest.mark.samba
CUSTOMER = "acme"  # as configured by the `server` fixture


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_logged(user, result, code: int) -> None:
    """Exit code = the guide's number; the log line carries the number and the guide's exact message."""
    log = user.log_text()
    assert result.returncode == code, f"exit {result.returncode}\n{result.stderr}\n{log}"
    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and f" ERROR Error {code}: {CATALOGUE[code].message}" in errors[0], log
    assert CATALOGUE[code].side == "client"


def test_31_open_local_certificate_store_error_folder_is_a_file(make_user, tmp_path):
    user = make_user("user1")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store should be")
    user.write_config(store=f"folder:{blocker}/certificates")
    assert_logged(user, user.run("run"), 31)


def test_31_open_local_certificate_store_error_damaged_nss_database(make_user, tmp_path):
    user = make_user("user1")
    profile = tmp_path / "profile"
    profile.mkdir()
    (profile / "cert9.db").write_bytes(b"this is not an SQLite database" * 100)
    (profile / "key4.db").write_bytes(b"nor is this" * 100)
    user.write_config(store=f"nss:{profile}")
    assert_logged(user, user.run("run"), 31)


def test_32_user_has_no_email_address_in_ad(make_user):
    user3 = make_user("user3")  # exists in AD without mail
    assert_logged(user3, user3.run("run"), 32)
    assert "sync: user3@TEST.COM has mail (none) in AD" in user3.log_text()


def test_33_create_certificate_request_error(make_user):
    user = make_user("user1")
    user.folder.mkdir(parents=True)
    (user.folder / "keys").write_text("the key directory is a file: no key can be saved")
    assert_logged(user, user.run("run"), 33)


@contextlib.contextmanager
def approval_required(server):
    def set_to(value: bool) -> None:
        server.shell(
            "from autoenroll.server.tenants.models import Customer; "
            f"Customer.objects.filter(uri='{CUSTOMER}').update(require_approval={value})"
        )

    set_to(True)
    try:
        yield
    finally:
        set_to(False)


def test_34_certificate_response_timeout_when_the_request_is_held(make_user, server):
    user = make_user("user1")
    user.extra_env["AUTOENROLL_CERTIFICATE_TIMEOUT"] = "8"  # the guide's 2 minutes, shortened for the test
    with approval_required(server):
        result = user.run("run")
    assert_logged(user, result, 34)
    assert "still pending" in user.log_text()


def test_35_connect_to_certificate_manager_error_when_the_server_is_down(make_user):
    user = make_user("user1")
    port = free_port()  # nothing listens there
    user.write_config(requestpath=f"https://ccm.test.com:{port}")
    user.extra_env["AUTOENROLL_CONNECT_TO"] = f"ccm.test.com:{port}:127.0.0.1"
    assert_logged(user, user.run("run"), 35)
    assert "Connection refused" in user.log_text()


def test_35_when_the_server_name_does_not_resolve(make_user, server):
    user = make_user("user1")
    user.write_config(requestpath=f"https://ccm.invalid:{server.port}")  # guide 2.1: the DNS entry is missing
    assert_logged(user, user.run("run"), 35)


@contextlib.contextmanager
def database_broken(server):
    """The server's database loses the table every request writes to (as after a botched upgrade): every
    request ends in an HTTP 500 page, not in one of the guide's numbered errors."""

    def sql(statement: str) -> None:
        server.shell(f"from django.db import connection; connection.cursor().execute({statement!r})")

    sql("ALTER TABLE enrollment_enrollmentevent RENAME TO enrollment_enrollmentevent_away")
    try:
        yield
    finally:
        sql("ALTER TABLE enrollment_enrollmentevent_away RENAME TO enrollment_enrollmentevent")


def test_an_internal_error_of_the_server_is_its_error_30(make_user, server):
    """The server's database is gone: the server answers its own number for an internal error (30, whose
    potential reason is the agent's 36, "certificate manager internal error"), which the agent passes on;
    the agent's 36 is left for a 5xx without a number (a proxy in front of the server)."""
    user = make_user("user1")
    with database_broken(server):
        result = user.run("run")
    assert result.returncode == 30, user.log_text()
    assert f"ERROR Error 30: {CATALOGUE[30].message} (HTTP 500)" in user.log_text()


def test_37_authentication_error_without_a_ticket(make_user):
    user = make_user("user1", ticket=False)
    assert_logged(user, user.run("run"), 37)
    assert "(no ticket: log on to the domain, or run kinit)" in user.log_text()


def test_37_authentication_error_when_ad_knows_no_such_service(make_user, server):
    """The user holds a TGT, but AD has no SPN HTTP/localhost: no service ticket, no authentication."""
    user = make_user("user1")
    user.write_config(requestpath=f"https://localhost:{server.port}")  # SPN HTTP/localhost: unknown to AD
    user.extra_env["AUTOENROLL_CONNECT_TO"] = f"localhost:{server.port}:127.0.0.1"
    assert_logged(user, user.run("run"), 37)
    assert "[domain_realm] must map the server's name to the realm of its keytab" in user.log_text()


def test_38_request_certificate_error_when_requestpath_is_not_the_service(make_user, server):
    user = make_user("user1")
    user.write_config(requestpath=f"https://ccm.test.com:{server.port}/api/not-enrollment")
    assert_logged(user, user.run("run"), 38)


def test_39_install_certificate_error_nss_database_locked_by_a_primary_password(make_user, server, tmp_path):
    user = make_user("user1")
    profile = tmp_path / "locked-profile"
    profile.mkdir()
    password = tmp_path / "primary-password"
    password.write_text("the user's Thunderbird primary password\n")
    subprocess.run(["certutil", "-N", "-d", f"sql:{profile}", "-f", str(password)], check=True, timeout=30)
    user.write_config(store=f"nss:{profile}")
    result = user.run("run")
    assert_logged(user, result, 39)
    assert "status: reported failed" in user.log_text()


@contextlib.contextmanager
def frozen(server):
    """The real server stops answering (SIGSTOP to its own process group; SIGCONT afterwards)."""
    os.killpg(server.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(server.process.pid, signal.SIGCONT)


def test_40_wait_sync_response_timeout_when_the_server_never_answers(make_user, server):
    user = make_user("user1")
    user.extra_env["AUTOENROLL_SYNC_TIMEOUT"] = "3"  # the guide's 40 s, shortened for the test
    with frozen(server):
        result = user.run("run", timeout=60)
    assert_logged(user, result, 40)
    assert result.seconds < 30


def test_40_also_for_the_one_call_logon_when_the_server_never_answers(make_user, server):
    """After the first run the agent syncs within its one logon call: a server that does not take the
    connection within the sync wait is still error 40, not 34 after the certificate's 2 minutes."""
    user = make_user("user1")
    assert user.run("run").returncode == 0, user.log_text()
    user.extra_env.update(AUTOENROLL_SYNC_TIMEOUT="3", AUTOENROLL_CERTIFICATE_TIMEOUT="25")
    user.log_path.unlink()
    with frozen(server):
        result = user.run("run", "--force", timeout=60)
    assert_logged(user, result, 40)
    log = user.log_text()
    assert result.seconds < 20 and "request: new" in log and "sync:" not in log  # the logon call, not a sync


def test_41_server_tls_certificate_not_trusted(make_user, samba_ad):
    user = make_user("user1")
    user.write_config(cafile=str(samba_ad.tls_ca))  # a CA, but not the one of the server's certificate
    assert_logged(user, user.run("run"), 41)


def test_41_without_the_root_deployed_the_system_store_does_not_trust_the_server(make_user):
    user = make_user("user1")
    user.write_config(cafile=None)
    assert_logged(user, user.run("run"), 41)
