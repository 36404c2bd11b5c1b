"""Hostile requests to the publication listener's application (`wsgi.PublicationHandler`: OCSP without
Django's request cycle, the rest through its URLconf), as any host on the network may send them: any method,
any path under the publication URLs, any body, any Content-Length. No answer may be a server error, and an
OCSP URL's answer to GET or POST is an OCSP response. Examples: AUTOENROLL_HYPOTHESIS_EXAMPLES (default 200)."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from cryptography.x509 import ocsp
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoenroll.server.certificates import wsgi
from autoenroll.server.certificates.wsgi import PublicationHandler

from .test_ocsp import ocsp_request

pytestmark = pytest.mark.django_db

EXAMPLES = int(os.environ.get("AUTOENROLL_HYPOTHESIS_EXAMPLES", "200"))
HYPOTHESIS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
PREFIXES = ["/ocsp/test-smime", "/ocsp/test-smime/", "/ocsp/", "/crl/test-smime", "/crl/", "/ca/test-smime", "/"]


def call(handler: PublicationHandler, method: str, path: str, body: bytes, length: str | None) -> tuple[int, bytes]:
    environ = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path.encode("utf-8", "surrogatepass").decode("latin-1"),  # as a WSGI server passes it
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8080",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8080",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    if length is not None:
        environ["CONTENT_LENGTH"] = length
    started = []
    result = handler(environ, lambda status, headers, exc_info=None: started.append(status))
    try:
        content = b"".join(result)
    finally:
        getattr(result, "close", lambda: None)()
    return int(started[0].split()[0]), content


@pytest.fixture
def handler(ca, monkeypatch) -> Iterator[PublicationHandler]:
    """In the test's transaction: the database upkeep of a request's start and end is off, as Django's test
    client turns it off (it would close the test's connection)."""
    monkeypatch.setattr(wsgi, "close_old_connections", lambda: None)
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    try:
        yield PublicationHandler()
    finally:
        for signal in (request_started, request_finished):
            signal.connect(close_old_connections)


@pytest.fixture
def good_request(ca, issue) -> bytes:
    return ocsp_request(issue(), ca[1].certificate_pem)


@HYPOTHESIS
@given(
    method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "OPTIONS", "DELETE", "PROPFIND"]),
    prefix=st.sampled_from(PREFIXES),
    suffix=st.one_of(
        st.text(st.characters(blacklist_categories=("Cs",)), max_size=60),
        st.binary(max_size=200).map(lambda b: quote(b, safe="")),
        st.sampled_from([".crl", "/0.crl", "/9999.crl", "/-1.crl", ".crt", ".p7c", ".pem", "/%%%", "/..%2f..", "=="]),
    ),
    body=st.one_of(st.binary(max_size=400), st.just(b"GOOD")),
    length=st.one_of(
        st.none(), st.just("len"), st.sampled_from(["", "-1", "１２", " 12", "1e3", "99999999999999999999", "16385"])
    ),
)
def test_no_publication_request_answers_a_server_error(handler, good_request, method, prefix, suffix, body, length):
    if body == b"GOOD":
        body = good_request
    status, content = call(
        handler, method, prefix + suffix, body, str(len(body)) if length == "len" else length
    )  # a view that raises fails here
    assert status < 500, (method, prefix + suffix, status)
    if prefix.startswith("/ocsp/test-smime") and method in ("GET", "POST") and status == 200:
        ocsp.load_der_ocsp_response(content)  # an OCSP answer, whatever was asked
