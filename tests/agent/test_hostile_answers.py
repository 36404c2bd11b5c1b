"""What a broken or hostile server (or a damaged local state) does to the agent: a numbered error or a
configuration message, never a traceback (exit 70), a hang, or a valid certificate replaced.

Each case is one class of defect an audit found with a fake server (tests/agent/fake_server.py); each
asserts the exact exit code and the words of the log line an admin would search for.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.fake_server import (
    MAIL,
    PKI,
    USER,
    Agent,
    FakeOCSPResponder,
    FakeServer,
    Hangup,
    answering,
    http_answer,
)

DAY = datetime.timedelta(days=1)
#: docs/agent.md, "Errors and exit codes": every number but 70 (a bug) and 64 (not a run's).
DOCUMENTED = {0, *range(1, 31), *range(31, 42), 78}


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return PKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def agent(tmp_path: Path, pki: PKI, monkeypatch: pytest.MonkeyPatch) -> Agent:
    return Agent(tmp_path, pki, monkeypatch)


@pytest.fixture
def serve(pki: PKI, agent: Agent) -> Iterator:
    """serve(handler) or serve(logon=..., ...): start a fake server and point the agent at it; every
    server is closed (threads joined) at teardown."""
    servers: list[FakeServer] = []

    def start(handler=None, **paths) -> FakeServer:
        server = FakeServer(pki, handler or answering(pki, **paths))
        servers.append(server)
        agent.port = server.port
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def installed(agent: Agent, serve) -> str:
    """A first run installed a good certificate: its serial."""
    serve()
    assert agent() == 0, agent.log()
    (serial,) = agent.serials()
    return serial


def answer_with(pki: PKI, **issue) -> object:
    """A logon answer issuing a certificate for the request's key, with ``issue`` changing it."""
    return lambda body: http_answer(200, pki.issued(pki.issue(body["csr"], **issue)))


# ---- damaged local state and configuration ----


@pytest.mark.parametrize(
    "content",
    [
        "[]",
        "null",
        '"x"',
        '{"mail": "user1@test.com", "unreported": "x"}',
        '{"mail": "user1@test.com", "in_flight": {"made": "yesterday", "store": "x"}}',
        '{"mail": "user1@test.com", "cn": "User One", "in_flight": [1]}',
        '{"mail": "user1@test.com", "cn": "User One", "unreported": "x", "next_revocation_check": "x"}',
    ],
    ids=[
        "list",
        "null",
        "string",
        "no-cn-unreported-text",
        "no-cn-in-flight-made-text",
        "in-flight-list",
        "unreported-and-next-check-text",
    ],
)
def test_damaged_state_file(agent: Agent, serve, content: str) -> None:
    """A state.json not as the agent writes it (edited by hand, written by another version): what does
    not fit is dropped, and without the user's cn the run starts as a first one, with a sync."""
    agent.state_path.write_text(content)
    server = serve()
    assert agent() == 0, agent.log()
    assert "installed, valid" in agent.last_line()
    assert len(agent.serials()) == 1
    if '"cn"' not in content:  # unknown user: who it is in AD is asked first
        assert server.paths()[0].endswith("/sync")


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("requestpath", "https://[ccm.test.com", "requestpath must be an https:// URL"),
        ("requestpath", "https://ccm.test.com:99999", "requestpath must be an https:// URL"),
        ("requestpath", "https://ccm.test.com:8443x", "requestpath must be an https:// URL"),
        ("days", "9" * 5000, "days must be a whole number"),
        ("store", "folder:/tmp/a\x00b", "store holds a NUL"),
        ("cafile", "/tmp/a\x00b", "cafile holds a NUL"),
    ],
    ids=["IPv6-bracket", "port-99999", "port-8443x", "days-5000-digits", "NUL-in-store", "NUL-in-cafile"],
)
def test_unusable_setting_is_a_configuration_error(agent: Agent, key: str, value: str, words: str) -> None:
    assert agent(**{key: value}) == 78
    assert f"WARNING configuration: {words}" in agent.last_line()
    assert len(agent.last_line()) < 500  # not the 5000 digits again


# ---- what the server says ----


def test_lone_surrogate_in_a_numbered_refusal(agent: Agent, serve) -> None:
    serve(logon=lambda body: http_answer(404, b'{"error": {"code": 2, "message": "Customer invalid.. \\ud800"}}'))
    assert agent() == 2
    assert "ERROR Error 2: Customer invalid.. \\ud800 (HTTP 404)" in agent.last_line()


@pytest.fixture
def tokyo() -> Iterator[None]:
    """The user's clock east of UTC, where 9999-12-31 23:59:59 UTC is already in year 10000."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Tokyo"
    time.tzset()
    yield
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


def test_certificate_without_expiry_east_of_utc(agent: Agent, serve, pki: PKI, tokyo, capsys) -> None:
    forever = datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.UTC)  # RFC 5280: no expiry
    serve(logon=answer_with(pki, not_after=forever))
    assert agent() == 0, agent.log()
    assert "valid until 9999-12-31" in agent.log()
    assert agent() == 0, agent.log()
    assert "valid until 9999-12-31" in agent.last_line() and "nothing to do" in agent.last_line()
    capsys.readouterr()
    assert agent("status") == 0
    assert "9999-12-31 23:59 UTC" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("pending", "code", "words"),
    [
        ({"retry_after": "soon"}, 0, "installed, valid"),
        ({"retry_after": float("nan")}, 0, "installed, valid"),
        ({"retry_after": [1]}, 0, "installed, valid"),
        ({"request_id": "a b"}, 38, "pending answer with request_id 'a b'"),
        ({"request_id": "x\r\nHost: evil"}, 38, "pending answer with request_id 'x\\r\\nHost: evil'"),
    ],
    ids=["retry-after-soon", "retry-after-NaN", "retry-after-list", "request-id-space", "request-id-CRLF"],
)
def test_odd_pending_answer(agent: Agent, serve, pki: PKI, monkeypatch, pending: dict, code: int, words: str) -> None:
    waits: list[float] = []
    monkeypatch.setattr(time, "sleep", waits.append)  # the agent would wait 5 s when retry_after is unusable
    csr: list[str] = []

    def logon(body):
        csr.append(body["csr"])
        return http_answer(200, {**USER, "status": "pending", "request_id": "r1", "retry_after": 1, **pending})

    server = serve(logon=logon, requests=lambda body: http_answer(200, pki.issued(pki.issue(csr[0]))))
    assert agent() == code, agent.log()
    assert words in agent.last_line()
    if code == 0:
        assert waits and all(1 <= wait <= 30 for wait in waits), waits
        assert any(path.endswith("/requests/r1") for path in server.paths())
    else:
        assert not any("/requests/" in path for path in server.paths())


def unknown_key_algorithm(pki: PKI, csr: str) -> str:
    """The certificate with its key's algorithm (id-ecPublicKey) changed to an OID nobody knows."""
    der = pki.issue(csr).public_bytes(serialization.Encoding.DER)
    ec_public_key = bytes.fromhex("06072A8648CE3D0201")
    assert ec_public_key in der
    der = der.replace(ec_public_key, bytes.fromhex("06072A8648CE3D0209"), 1)
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (
            lambda pki, csr: pki.issued(pki.issue(csr), chain=[pki.chain_pem]),
            "unreadable certificate in the answer: the chain is not PEM text",
        ),
        (lambda pki, csr: pki.issued(unknown_key_algorithm(pki, csr)), "unreadable certificate in the answer: "),
    ],
    ids=["chain-not-a-string", "unknown-key-algorithm"],
)
def test_unreadable_certificate_in_the_answer(agent: Agent, serve, pki: PKI, answer, words: str) -> None:
    serve(logon=lambda body: http_answer(200, answer(pki, body["csr"])))
    assert agent() == 38, agent.log()
    assert f"ERROR Error 38: Request certificate error. ({words}" in agent.last_line()
    assert agent.serials() == []


def test_a_request_in_flight_whose_handle_is_not_the_agents(agent: Agent, serve) -> None:
    """The request of an earlier run, fresh and for this store, mail and CN, but its key's handle damaged:
    a new key is made (exit 70 before)."""
    state = {"mail": MAIL, "cn": USER["cn"], "principal": USER["principal"]}
    state["in_flight"] = {"store": f"folder:{agent.store}", "mail": MAIL, "cn": USER["cn"], "keytype": "ec-p256"}
    state["in_flight"].update(made=time.time(), handle="x")
    agent.state_path.write_text(json.dumps(state))
    serve()
    assert agent(force=True) == 0, agent.log()
    assert "installed, valid" in agent.last_line()


@pytest.mark.parametrize("cn", ["山田\u3000太郎", "Jos\u00e9\u00a0Garc\u00eda", "\u0645\u06cc\u200c\u0631\u0648\u0645"])
def test_names_of_every_script_are_names(agent: Agent, serve, cn: str) -> None:
    """An ideographic space, a no-break space, a zero-width non-joiner: names as AD holds them, not
    control characters (a refusal there would leave these users without certificates)."""
    serve(sync=lambda body: http_answer(200, {**USER, "cn": cn}))
    assert agent() == 0, agent.log()
    assert "installed, valid" in agent.last_line()


@pytest.mark.parametrize(
    ("answer", "code", "words"),
    [
        (http_answer(200, b"[" * 200_000 + b"]" * 200_000), 38, "unexpected answer HTTP 200"),
        (http_answer(403, {"error": {"code": True, "message": "m"}}), 38, "unexpected answer HTTP 403"),
        (http_answer(403, {"error": {"code": 999, "message": "m"}}), 38, "unexpected answer HTTP 403"),
        (http_answer(404, {"error": {"code": 2, "message": "x" * 900_000}}), 2, "x" * 500 + " (HTTP 404)"),
        (http_answer(200, {**USER, "email": ["a@test.com"]}), 38, "email in the server's answer is not text"),
        (http_answer(200, b'{"principal": "u@TEST.COM", "email": "a\\udc80@test.com"}'), 38, "is not text"),
        (http_answer(200, {**USER, "email": "not a mail"}), 38, "the server's answer names the mail"),
        (http_answer(200, {**USER}, {"Content-Encoding": "gzip"}), 38, "Received response with content-encoding"),
    ],
    ids=["nested-json", "code-true", "code-999", "long-message", "mail-list", "mail-surrogate", "not-a-mail", "gzip"],
)
def test_odd_sync_answer(agent: Agent, serve, answer: bytes, code: int, words: str) -> None:
    """A sync answer no agent should act on: the documented number, the server's message cut to 500
    characters, never RecursionError, exit status True or a CSR error (33) for a mail that is not one."""
    serve(sync=lambda body: answer)
    assert agent() == code, agent.log()
    assert f"ERROR Error {code}:" in agent.last_line() and words in agent.last_line(), agent.last_line()[-300:]
    assert "x" * 501 not in agent.last_line()


@pytest.mark.parametrize(
    ("raw", "code", "words"),
    [
        (b"HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n", 38, "not HTTP"),
        (b"garbage\r\nContent-Length: 0\r\n\r\n", 38, "not HTTP"),
        (b"ICY 200 OK\r\nContent-Length: 0\r\n\r\n", 38, "not HTTP"),
        (http_answer(200, {}, {f"X-H{i}": "v" for i in range(150)}), 38, "not HTTP"),
        (http_answer(200, USER, {"Content-Length": "99999999999999999999"}), 35, "Connection broken: IncompleteRead"),
    ],
    ids=["status-not-a-number", "no-status-line", "ICY", "150-headers", "huge-content-length"],
)
def test_malformed_http_framing(agent: Agent, serve, raw: bytes, code: int, words: str) -> None:
    serve(sync=lambda body: Hangup(raw))
    assert agent() == code, agent.log()
    assert f"ERROR Error {code}:" in agent.last_line() and words in agent.last_line()


def test_answer_larger_than_a_mebibyte(agent: Agent, serve) -> None:
    serve(sync=lambda body: http_answer(200, {**USER, "padding": "x" * (1 << 20)}))
    assert agent() == 38, agent.log()
    assert "ERROR Error 38: Request certificate error. (POST /api/enroll/sync: an answer of more than" in (
        agent.last_line()
    )


@pytest.mark.parametrize(
    ("endpoint", "timeout", "code"), [("sync", "sync_timeout", 40), ("logon", "certificate_timeout", 34)]
)
def test_server_trickling_a_byte_at_a_time(agent: Agent, serve, endpoint: str, timeout: str, code: int) -> None:
    slow = Hangup(b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 60, every=0.5)  # 30 s if nothing stops it
    serve(**{endpoint: lambda body: slow})
    setattr(agent, timeout, 2)
    started = time.monotonic()
    assert agent() == code, agent.log()
    assert time.monotonic() - started < 2 + 3
    assert f"ERROR Error {code}:" in agent.last_line() and f"no answer to POST /api/enroll/{endpoint} within" in (
        agent.last_line()
    )


def test_garbage_ocsp_answer(agent: Agent, serve, pki: PKI) -> None:
    responder = FakeOCSPResponder(b"garbage")
    try:
        serve(logon=answer_with(pki, ocsp=responder.url))
        assert agent() == 0, agent.log()
        (serial,) = agent.serials()
        state = json.loads(agent.state_path.read_text())
        state["next_revocation_check"] = None  # due now
        agent.state_path.write_text(json.dumps(state))
        assert agent() == 0, agent.log()
    finally:
        responder.close()
    assert responder.requests == 1
    warning = next(line for line in agent.log().splitlines() if " WARNING " in line)
    assert f"check: revocation of {serial} not checked: {responder.url}: an unusable OCSP answer" in warning
    assert "nothing to do" in agent.last_line()
    due = json.loads(agent.state_path.read_text())["next_revocation_check"]
    assert due["serial"] == serial and 3000 < due["at"] - time.time() <= 3600  # again in an hour


# ---- the stores ----


@pytest.mark.parametrize("damaged", ["foreign", "current"])
def test_an_unreadable_file_in_the_folder_store_is_passed_over(agent: Agent, serve, installed: str, damaged) -> None:
    """One damaged file stopped every logon at error 31, for good. Now it is named in the log; a damaged
    current certificate is replaced, a damaged foreign file changes nothing."""
    path = agent.store / (f"{installed}.cert.pem" if damaged == "current" else "foreign.cert.pem")
    path.write_bytes(b"-----BEGIN CERTIFICATE-----\nbm90IERFUg==\n-----END CERTIFICATE-----\n")
    assert agent() == 0, agent.log()
    assert f"WARNING check: folder:{agent.store}: passed over {path.name}" in agent.log()
    if damaged == "current":
        assert "done: certificate" in agent.last_line()
    else:
        assert agent.last_line().endswith("nothing to do")


def test_fifo_in_the_folder_store_does_not_block(agent: Agent, serve) -> None:
    serve()
    agent.store.mkdir()
    fifo = agent.store / "x.cert.pem"
    os.mkfifo(fifo)
    outcome: list[int] = []
    run = threading.Thread(target=lambda: outcome.append(agent()), daemon=True)
    run.start()
    run.join(timeout=15)
    if run.is_alive():  # blocked opening the FIFO: a writer that closes at once lets it go on
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        run.join(timeout=15)
        pytest.fail("the run blocked on a FIFO in the store")
    assert outcome == [0], agent.log()
    assert len(agent.serials()) == 2 and fifo.exists()  # x and the new certificate


@pytest.mark.parametrize(
    ("issue", "words"),
    [
        ({"mail": "mallory@test.com"}, "the certificate is for mallory@test.com, not user1@test.com"),
        ({"not_before": now() - 30 * DAY, "not_after": now() - DAY}, "not now"),
        ({"not_before": now() + 30 * DAY, "not_after": now() + 400 * DAY}, "not now"),
        ({"issuer": x509.Name.from_rfc4514_string("CN=Other CA")}, "does not match issuername"),
    ],
    ids=["another-mail", "expired", "valid-in-30-days", "other-issuer"],
)
def test_unacceptable_certificate_replaces_nothing(agent: Agent, serve, pki: PKI, installed: str, issue, words) -> None:
    server = serve(logon=answer_with(pki, **issue))
    assert agent("run", "--force") == 38, agent.log()
    assert "ERROR Error 38: Request certificate error. (the certificate" in agent.last_line()
    assert words in agent.last_line()
    assert agent.serials() == [installed]
    assert not list(agent.store.glob("archive/*"))
    assert not [c for c in server.calls if "status" in c.path and "replaced_serial" in (c.body or {})]


def test_same_certificate_for_a_resent_key_is_not_archived(agent: Agent, serve, pki: PKI, tmp_path: Path) -> None:
    """docs/protocol.md: a key sent again gets the certificate already issued for it. When the first
    run installed it in one store of two, the second installs it again: it is not the one it replaces."""
    issued: dict[bytes, str] = {}

    def logon(body):
        key = x509.load_pem_x509_csr(body["csr"].encode()).public_key()
        spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        pem = issued.setdefault(spki, pki.issued(pki.issue(body["csr"], serial=0x7777))["certificate"])
        return http_answer(200, pki.issued(pem))

    server = serve(logon=logon)
    first, second = tmp_path / "A", tmp_path / "B"
    second.mkdir()
    (second / "7777.chain.pem").mkdir()  # the second store refuses the certificate once
    stores = f"folder:{first},folder:{second}"
    assert agent(store=stores) == 39, agent.log()
    assert (first / "7777.cert.pem").exists()
    (second / "7777.chain.pem").rmdir()
    assert agent("run", "--force", store=stores) == 0, agent.log()
    assert "request: the answer to the last request never arrived: its key again" in agent.log()
    assert len(issued) == 1
    assert (first / "7777.cert.pem").exists() and (second / "7777.cert.pem").exists()
    assert not (first / "archive").exists()
    reports = [c.body for c in server.calls if c.path.endswith("status") and c.body["status"] == "installed"]
    assert reports and "replaced_serial" not in reports[-1]


def test_archive_that_is_a_file(agent: Agent, serve, installed: str) -> None:
    (agent.store / "archive").write_text("not a folder")
    assert agent("run", "--force") == 0, agent.log()
    assert f"WARNING install: {installed} left in folder:{agent.store}:" in agent.log()
    assert "installed, valid" in agent.last_line()
    assert len(agent.serials()) == 2


# ---- anything at all in a logon answer ----

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=20))


def _nested(inner: st.SearchStrategy) -> st.SearchStrategy:
    return st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)


json_value = st.recursive(json_leaf, _nested, max_leaves=8)
#: Each field of a logon answer, absent or anything, or a value of another field (a status where a
#: request id goes): what the audit found was mostly the right key with a value of the wrong type.
FIELD = json_value | st.sampled_from(["pending", "issued", "r1", MAIL, "soon", {"code": 2, "message": "m"}])
KEYS = ["principal", "email", "cn", "status", "certificate", "chain", "serial", "status_token", "request_id",
        "retry_after", "error"]  # fmt: skip
EXAMPLES = int(os.environ.get("AUTOENROLL_HYPOTHESIS_EXAMPLES", "100"))


@pytest.fixture(scope="module")
def any_logon_server(pki: PKI) -> Iterator[tuple[FakeServer, dict]]:
    """One server for every example (Hypothesis runs them in one test call); ``answer["logon"]`` is set
    by each example."""
    answer: dict = {}
    server = FakeServer(pki, answering(pki, logon=lambda body: answer["logon"](body)))
    yield server, answer
    server.close()


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=bool(os.environ.get("CI")),  # CI: the same examples every run; locally: new ones each time
)
@given(
    status=st.just(200) | st.sampled_from([201, 400, 403, 404, 429, 500, 503]),
    fields=st.fixed_dictionaries({}, optional=dict.fromkeys(KEYS, FIELD)),
    on_a_good_answer=st.booleans(),
)
def test_any_json_logon_answer_ends_in_a_documented_code(
    pki: PKI, monkeypatch: pytest.MonkeyPatch, any_logon_server, status: int, fields: dict, on_a_good_answer: bool
) -> None:
    server, answer = any_logon_server

    def logon(body):
        good = pki.issued(pki.issue(body["csr"])) if on_a_good_answer else {}
        return http_answer(status, {**good, **fields})

    answer["logon"] = logon
    home = Path(tempfile.mkdtemp(prefix="hostile-"))
    try:
        with monkeypatch.context() as mp:
            mp.setattr(time, "sleep", lambda seconds: None)  # a pending answer's polls
            agent = Agent(home, pki, mp, port=server.port, certificate_timeout=2)
            code = agent()
        assert code in DOCUMENTED, agent.log()
    finally:
        shutil.rmtree(home, ignore_errors=True)
