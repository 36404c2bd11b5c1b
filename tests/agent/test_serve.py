"""What an admin's browser gets from the real `autoenroll-server serve` (as the README starts it), not from
Django's test server: the sign-in page and its stylesheet, over HTTPS."""

from __future__ import annotations

import http.client
import socket
import ssl

from autoenroll.testbed.server import SERVER_HOST


def get(server, path: str) -> tuple[int, dict, bytes]:
    context = ssl.create_default_context(cafile=str(server.root_ca))
    conn = http.client.HTTPSConnection(SERVER_HOST, server.port, context=context, timeout=30)
    conn._create_connection = lambda addr, timeout=None, source_address=None: socket.create_connection(
        ("127.0.0.1", server.port), timeout=timeout
    )
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def test_the_admin_pages_are_styled_under_serve(server):
    status, _, page = get(server, "/login/?next=/")
    assert status == 200, page[:500]
    assert b"/static/web/style.css" in page
    status, headers, css = get(server, "/static/web/style.css")
    assert status == 200 and headers["content-type"].startswith("text/css")
    assert b"{" in css and len(css) > 100
    assert get(server, "/static/web/nothing-here.css")[0] == 404
