"""`autoenroll run` end to end: real AD (Samba), real tickets, the real server, real NSS tools."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import subprocess
import sys
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from autoenroll.agent.stores.folder import key_id
from checks import run_openssl

from .conftest import HOST

pytestmark = pytest.mark.samba


def nss_db(path) -> str:
    """A fresh NSS database, as a new Thunderbird profile holds (no primary password)."""
    path.mkdir()
    subprocess.run(["certutil", "-N", "-d", f"sql:{path}", "--empty-password"], check=True, timeout=30)
    return str(path)


def nss_certificates(path, nick: str) -> list[x509.Certificate]:
    listing = subprocess.run(["certutil", "-L", "-d", f"sql:{path}"], capture_output=True, text=True, timeout=30)
    assert re.search(rf"^{re.escape(nick)}\s+u,u,u\s*$", listing.stdout, re.M), listing.stdout
    pem = subprocess.run(
        ["certutil", "-L", "-d", f"sql:{path}", "-n", nick, "-a"], capture_output=True, timeout=30, check=True
    ).stdout
    return x509.load_pem_x509_certificates(pem)


def folder_certificates(folder) -> dict[str, x509.Certificate]:
    return {p.name: x509.load_pem_x509_certificate(p.read_bytes()) for p in folder.glob("*.cert.pem")}


def mails(cert: x509.Certificate) -> list[str]:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.RFC822Name
    )


def server_certificate(server, serial: str) -> str:
    return server.shell(
        "from autoenroll.server.certificates.models import Certificate as C; "
        f"c = C.objects.get(serial='{serial}'); print(c.status, c.revocation_reason or '-')"
    )


def test_user1_gets_a_certificate_in_the_folder_and_nss_then_nothing_then_renewal_revokes_the_old(
    make_user, server, tmp_path
):
    user1 = make_user("user1")
    profile = nss_db(tmp_path / "thunderbird-profile")
    user1.write_config(store=f"folder, nss:{profile}")

    first = user1.run("run")
    assert first.returncode == 0, first.stderr + user1.log_text()
    assert first.stdout == ""  # silent at logon

    # the PEM/PKCS#12 folder: certificate for the mail AD holds, key and PKCS#12 readable by the user only
    ((name, cert),) = folder_certificates(user1.folder).items()
    assert mails(cert) == ["user1@test.com"]
    serial = format(cert.serial_number, "x")
    key_file = user1.folder / "keys" / f"{key_id(cert.public_key())}.key.pem"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert (user1.folder / f"{serial}.p12").stat().st_mode & 0o777 == 0o600
    assert user1.folder.stat().st_mode & 0o777 == 0o700
    key, p12_cert, p12_chain = pkcs12.load_key_and_certificates((user1.folder / f"{serial}.p12").read_bytes(), None)
    assert p12_cert == cert and len(p12_chain) >= 1
    # ... and the NSS database, with its private key (trust u,u,u)
    assert [format(c.serial_number, "x") for c in nss_certificates(profile, "user1@test.com")] == [serial]
    assert server_certificate(server, serial) == "issued -"
    log = user1.log_text()
    # the first run on this machine asks AD who the user is, then one logon call issues
    for step in ("connect:", "sync: user1@TEST.COM has mail user1@test.com", "request:", "logon: issued", "install:"):
        assert step in log
    assert f"status: reported installed {serial}" in log

    # second logon: nothing due; no server contacted (the address is dead and there is no ticket)
    user1.ccache = None
    user1.extra_env["AUTOENROLL_CONNECT_TO"] = f"ccm.test.com:{server.port}:127.0.0.9"
    before = len(user1.log_text().splitlines())
    second = user1.run("run")
    assert second.returncode == 0, second.stderr + user1.log_text()
    new_lines = user1.log_text().splitlines()[before:]
    assert len(new_lines) == 1 and "nothing to do" in new_lines[0] and serial in new_lines[0], new_lines
    assert folder_certificates(user1.folder) == {name: cert}

    # `days` larger than what is left: renewal, and the server revokes the replaced certificate
    user1.kinit()
    user1.extra_env.clear()
    user1.write_config(days="400")
    before = len(user1.log_text().splitlines())
    third = user1.run("run")
    assert third.returncode == 0, third.stderr + user1.log_text()
    renewal = "\n".join(user1.log_text().splitlines()[before:])
    assert "logon: issued" in renewal and "sync:" not in renewal  # one authenticated call per logon
    (new_cert,) = folder_certificates(user1.folder).values()
    new_serial = format(new_cert.serial_number, "x")
    assert new_serial != serial and mails(new_cert) == ["user1@test.com"]
    assert f"status: reported installed {new_serial}; the server revoked the replaced certificate {serial}" in (
        user1.log_text()
    )
    assert server_certificate(server, serial) == "revoked superseded"
    assert server_certificate(server, new_serial) == "issued -"
    # the old key stays (it decrypts old mail); the old certificate is archived
    assert key_file.exists() and (user1.folder / "archive" / f"{serial}.cert.pem").exists()
    assert {format(c.serial_number, "x") for c in nss_certificates(profile, "user1@test.com")} == {serial, new_serial}

    status = user1.run("status")
    assert status.returncode == 0
    assert f"serial     {new_serial}  [renewal due]" in status.stdout  # days=400 > 365 left
    assert "issuer     CN=" in status.stdout and "days left" in status.stdout


def test_the_certificate_works_for_smime_sign_verify_encrypt_decrypt(make_user, server, tmp_path):
    user1 = make_user("user1")
    result = user1.run("run", "--force")
    assert result.returncode == 0, result.stderr + user1.log_text()
    (cert_path,) = [p for p in user1.folder.glob("*.cert.pem")]
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    chain = cert_path.with_name(cert_path.name.replace(".cert.pem", ".chain.pem"))
    key = user1.folder / "keys" / f"{key_id(cert.public_key())}.key.pem"
    serialization.load_pem_private_key(key.read_bytes(), None)
    message = tmp_path / "message.txt"
    message.write_text("Subject: hello\r\n\r\nsigned and sealed by autoenroll\r\n")

    signed = tmp_path / "signed.p7m"
    out = run_openssl("cms", "-sign", "-in", message, "-signer", cert_path, "-inkey", key, "-certfile", chain,
                      "-out", signed)  # fmt: skip
    assert out.returncode == 0, out.stderr
    out = run_openssl("cms", "-verify", "-in", signed, "-CAfile", server.root_ca, "-purpose", "smimesign",
                      "-out", tmp_path / "verified.txt")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "verified.txt").read_text() == message.read_text()

    sealed = tmp_path / "sealed.p7m"
    out = run_openssl("cms", "-encrypt", "-aes-256-cbc", "-in", message, "-out", sealed, cert_path)
    assert out.returncode == 0, out.stderr
    out = run_openssl("cms", "-decrypt", "-in", sealed, "-recip", cert_path, "-inkey", key,
                      "-out", tmp_path / "opened.txt")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "opened.txt").read_text() == message.read_text()


def test_a_store_added_later_gets_the_current_certificate_without_a_new_enrollment(make_user, tmp_path):
    user1 = make_user("user1")
    assert user1.run("run", "--force").returncode == 0
    (cert,) = folder_certificates(user1.folder).values()
    profile = nss_db(tmp_path / "new-profile")
    user1.write_config(store=f"folder, nss:{profile}")
    user1.ccache = None  # no ticket: proves no enrollment happens
    result = user1.run("run")
    assert result.returncode == 0, result.stderr + user1.log_text()
    assert [c.serial_number for c in nss_certificates(profile, "user1@test.com")] == [cert.serial_number]
    assert "copied from folder:" in user1.log_text()


def test_status_lists_the_installed_certificate(make_user):
    user2 = make_user("user2")
    assert user2.run("run").returncode == 0
    status = user2.run("status")
    assert status.returncode == 0
    assert re.search(r"serial +[0-9a-f]+  \[current\]", status.stdout), status.stdout
    assert "<user2@test.com>" in status.stdout
    assert re.search(r"validity .* UTC, 36[45] days left", status.stdout), status.stdout


def test_without_customeruri_the_log_has_the_guides_error_1(make_user):
    """Guide 8.1.1, error 1: "customeruri" was not provided in autoenroll.conf."""
    user1 = make_user("user1")
    user1.write_config(customeruri=None)
    result = user1.run("run")
    assert result.returncode == 1, user1.log_text()
    assert "ERROR Error 1: No customer URI supplied.." in user1.log_text()


def test_a_server_refusal_is_logged_with_its_number_and_message_as_received(make_user):
    user1 = make_user("user1")
    user1.write_config(customeruri="nobody")
    result = user1.run("run")
    assert result.returncode == 2
    assert "ERROR Error 2: Customer invalid.. (HTTP 404)" in user1.log_text()


def test_twenty_runs_of_one_user_at_once_renew_once(make_user, server):
    """Logon script, scheduled task and a second session at the same moment: the runs wait for each other,
    the first renews, the others find the new certificate and do nothing."""
    user1 = make_user("user1")
    assert user1.run("run").returncode == 0, user1.log_text()
    (old,) = folder_certificates(user1.folder).values()
    user1.write_config(days="400")  # renewal due for every run below
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "autoenroll.agent", "--config", str(user1.config_path), "run"],
            env=user1.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(20)
    ]
    codes = [p.wait(timeout=300) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    assert codes == [0] * 20, user1.log_text()
    user1.write_config(days="30")
    (new,) = folder_certificates(user1.folder).values()
    assert new.serial_number != old.serial_number
    issued = server.shell(
        "from autoenroll.server.certificates.models import Certificate; "
        "print(Certificate.objects.filter(mail='user1@test.com', replaces__serial="
        f"'{format(old.serial_number, 'x')}').count())"
    )
    assert issued == "1"  # one renewal, not twenty
    assert server_certificate(server, format(old.serial_number, "x")) == "revoked superseded"


def test_a_left_over_report_the_server_refuses_is_dropped_not_sent_for_ever(make_user):
    user1 = make_user("user1")
    state = user1.home / ".local" / "state" / "autoenroll" / "state.json"
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(
        json.dumps({"unreported": {"customeruri": "acme", "status": "installed", "serial": "abcdef0123456789"}})
    )
    first = user1.run("run")
    assert first.returncode == 0, user1.log_text()
    assert "refused the report of certificate abcdef0123456789" in user1.log_text()
    assert json.loads(state.read_text())["unreported"] is None


class AnswerLosingProxy:
    """TCP between the agent and the server that loses the answer of the first logon: it passes the
    TLS handshake and the request on, then, once the agent has sent more than `REQUEST_BYTES`, keeps
    what the server answers and closes both sides a few seconds later (the server has committed by
    then). Later connections pass untouched. TLS is end to end; the proxy sees only bytes."""

    REQUEST_BYTES = 2500  # a ClientHello is < 600 bytes; a logon request (SPNEGO token + CSR) is more

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lost = threading.Event()
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            lose = not self.lost.is_set()
            sent = [0]
            threading.Thread(target=self._pump, args=(client, upstream, sent, None), daemon=True).start()
            gate = sent if lose else None
            threading.Thread(target=self._pump, args=(upstream, client, None, gate), daemon=True).start()

    def _pump(self, src, dst, count, gate) -> None:
        try:
            while data := src.recv(65536):
                if count is not None:
                    count[0] += len(data)
                if gate is not None and gate[0] > self.REQUEST_BYTES:
                    time.sleep(3)  # the server signs and commits; its answer goes nowhere
                    self.lost.set()
                    break
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):  # shutdown wakes the other direction's recv and sends the FIN now
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.listener.close()


class KeepAliveExpiringProxy(AnswerLosingProxy):
    """TCP between the agent and the server whose first connection ends as a server's keep-alive timeout
    ends it: once the logon was sent and answered, the agent's next request on that connection (the status
    report) meets a closed connection. Later connections pass untouched."""

    def _accept(self) -> None:
        first = True
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            state = {"sent": 0, "answered": False, "expire": first}
            first = False
            threading.Thread(target=self._client_side, args=(client, upstream, state), daemon=True).start()
            threading.Thread(target=self._server_side, args=(upstream, client, state), daemon=True).start()

    def _client_side(self, src, dst, state) -> None:
        try:
            while data := src.recv(65536):
                if state["expire"] and state["answered"]:
                    self.lost.set()  # the next request on the kept connection: the server "timed out" first
                    break
                state["sent"] += len(data)
                dst.sendall(data)
        except OSError:
            pass
        self._close(src, dst)

    def _server_side(self, src, dst, state) -> None:
        try:
            while data := src.recv(65536):
                if state["sent"] > self.REQUEST_BYTES:
                    state["answered"] = True
                dst.sendall(data)
        except OSError:
            pass
        self._close(src, dst)

    @staticmethod
    def _close(*sockets) -> None:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def test_a_kept_connection_the_server_closed_is_asked_again_on_a_new_one(make_user, server):
    """The status report goes out on the logon's kept connection just as the server's keep-alive ends it
    ("Remote end closed connection without response", CI once): the agent sends it again on a new one."""
    user1 = make_user("user1")
    assert user1.run("run").returncode == 0, user1.log_text()
    proxy = KeepAliveExpiringProxy(server.port)
    try:
        user1.write_config(requestpath=f"https://{HOST}:{proxy.port}", days="400")  # renewal due
        user1.extra_env["AUTOENROLL_CONNECT_TO"] = f"{HOST}:{proxy.port}:127.0.0.1"
        result = user1.run("run")
        assert proxy.lost.is_set(), user1.log_text()
        assert result.returncode == 0, user1.log_text()
    finally:
        proxy.close()
        user1.write_config(days="30")


def test_after_a_lost_logon_answer_the_next_run_gets_the_certificate_issued_for_its_key(make_user, server):
    """The server signed and recorded a certificate, but its answer never reached the agent. The
    next run sends the same key again and is handed that certificate: one issuance, no orphan."""
    user1 = make_user("user1")
    assert user1.run("run").returncode == 0, user1.log_text()
    (old,) = folder_certificates(user1.folder).values()
    proxy = AnswerLosingProxy(server.port)
    try:
        user1.write_config(requestpath=f"https://{HOST}:{proxy.port}", days="400")  # renewal due
        user1.extra_env["AUTOENROLL_CONNECT_TO"] = f"{HOST}:{proxy.port}:127.0.0.1"
        lost = user1.run("run")
        assert proxy.lost.is_set() and lost.returncode != 0, user1.log_text()
        again = user1.run("run")
        assert again.returncode == 0, user1.log_text()
        assert "the answer to the last request never arrived: its key again" in user1.log_text()
    finally:
        proxy.close()
        user1.write_config(days="30")
    (new,) = folder_certificates(user1.folder).values()
    old_serial = format(old.serial_number, "x")
    renewals = server.shell(
        "from autoenroll.server.certificates.models import Certificate as C; "
        f"old = C.objects.get(serial='{old_serial}'); "
        "print(C.objects.filter(mail='user1@test.com', profile='smime', pk__gt=old.pk).count())"
    )
    assert renewals == "1"  # the certificate of the lost answer is the one installed: not a second one
    assert server_certificate(server, old_serial) == "revoked superseded"
    assert new.serial_number != old.serial_number


def test_a_certificate_an_admin_revoked_is_replaced_at_the_first_logon_after_the_daily_check(make_user, server):
    """The store cannot know that an admin revoked the certificate; once a day the agent asks the OCSP
    responder the certificate names, and enrolls again when it says revoked. `status` says it too."""
    user1 = make_user("user1")
    assert user1.run("run").returncode == 0, user1.log_text()
    (first,) = folder_certificates(user1.folder).values()
    serial = format(first.serial_number, "x")
    server.cli("certificates", "revoke", serial, "--reason", "keyCompromise")
    assert user1.run("run").returncode == 0
    assert user1.log_text().splitlines()[-1].endswith("nothing to do")  # checked at most once a day
    state = user1.home / ".local" / "state" / "autoenroll" / "state.json"
    data = json.loads(state.read_text())
    assert data["next_revocation_check"]["serial"] == serial
    data["next_revocation_check"]["at"] = 0  # a day later
    state.write_text(json.dumps(data))
    assert user1.run("run").returncode == 0, user1.log_text()
    assert f"check: certificate {serial} was revoked" in user1.log_text()
    (second,) = folder_certificates(user1.folder).values()
    assert second.serial_number != first.serial_number
    status = user1.run("status").stdout
    assert "[current]" in status and "revocation good (OCSP, asked now)" in status, status
    server.cli("certificates", "revoke", format(second.serial_number, "x"), "--reason", "unspecified")
    status = user1.run("status").stdout
    assert "[revoked]" in status and "the next run enrolls again" in status, status
    assert user1.run("run").returncode == 0, user1.log_text()  # as status said: not a day later
    (third,) = folder_certificates(user1.folder).values()
    assert third.serial_number != second.serial_number


def test_a_certificate_the_server_does_not_know_is_replaced_after_the_daily_check(make_user, server):
    """A server restored from a backup older than the user's certificate: its responder answers "unknown"
    (signed), the agent enrolls again, and its report of the replaced serial the server never issued is
    recorded, not refused (error 24 at every logon before)."""
    user = make_user("user2")
    assert user.run("run").returncode == 0, user.log_text()
    (first,) = folder_certificates(user.folder).values()
    serial = format(first.serial_number, "x")
    server.shell(  # the serial the restored database lacks (the row renamed: the audit trail stays intact)
        "from autoenroll.server.certificates.models import Certificate as C; "
        f"C.objects.filter(serial='{serial}').update(serial='{serial}0ff')"
    )
    state = user.home / ".local" / "state" / "autoenroll" / "state.json"
    data = json.loads(state.read_text())
    data["next_revocation_check"]["at"] = 0  # a day later
    state.write_text(json.dumps(data))
    assert "unknown to the CA's responder" in user.run("status").stdout
    assert user.run("run").returncode == 0, user.log_text()
    assert f"check: certificate {serial} is unknown to its CA's responder" in user.log_text()
    (second,) = folder_certificates(user.folder).values()
    assert second.serial_number != first.serial_number
    assert server_certificate(server, format(second.serial_number, "x")).startswith("issued")
