"""What an admin's browser gets from the real `autoenroll-server serve` (as the README starts it), not from
Django's test server: the sign-in page and its stylesheet, over HTTPS."""

from __future__ import annotations

import http.client
import socket
import ssl
import time

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


def test_two_servers_on_one_host_keep_their_own_control_sockets(samba_ad, tmp_path):
    """gunicorn's control socket defaults to one path per user, which each `serve` deleted at start and
    stop; each data directory now has its own."""
    from autoenroll.testbed.server import start_server

    with start_server(tmp_path / "a", samba_ad, customer="acme", env={"HOME": str(tmp_path)}) as a:
        with start_server(tmp_path / "b", samba_ad, customer="acme", env={"HOME": str(tmp_path)}) as b:
            sockets = [a.data_dir / "gunicorn.ctl", b.data_dir / "gunicorn.ctl"]
            for _ in range(50):
                if all(s.exists() for s in sockets):
                    break
                time.sleep(0.1)
            assert all(s.is_socket() for s in sockets)
        assert (a.data_dir / "gunicorn.ctl").is_socket()  # b stopped: a's socket stays
        assert get(a, "/static/web/style.css")[0] == 200
