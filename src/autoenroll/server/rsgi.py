"""What `serve` runs in each Granian worker, of the site and of the publication listener: Django's WSGI
handler behind Granian's RSGI interface.

The request body is received by the worker's event loop, within a time limit (`request_body_seconds`) and
a size limit, before one of the application's threads takes the request. Under Granian's WSGI interface
the thread read the body as it arrived, with no time limit (Granian's issue 728, "wontfix"): a client that
declared a body and sent a byte a second held a thread for as long as it liked, and as many such clients
as threads stopped the server for everyone.
"""

from __future__ import annotations

import asyncio
import io
import queue
import sys
import threading

from autoenroll.server.utils.http import content_length

_TEXT = [("content-type", "text/plain; charset=utf-8"), ("connection", "close")]


class Application:
    """An RSGI application around a WSGI one, which runs in a pool of `threads` threads.

    A body declared larger than `max_body` is not received: 413, except under `refused_by_app`, whose
    requests go to the application without it, which refuses them by their length with its own answer
    (the enrollment calls: the guide's error 29; OCSP: malformedRequest)."""

    def __init__(self, wsgi, threads: int, *, body_seconds: float, max_body: int, refused_by_app: str) -> None:
        self.wsgi, self.body_seconds, self.max_body, self.refused_by_app = wsgi, body_seconds, max_body, refused_by_app
        self.threads = threads
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.receiving: dict[asyncio.Task, float] = {}  # requests whose body is awaited, and until when

    def __rsgi_init__(self, loop) -> None:
        self.loop = loop
        for number in range(self.threads):
            threading.Thread(target=self._work, name=f"request-{number}", daemon=True).start()
        loop.call_later(1, self._expire)

    def _expire(self) -> None:
        """Once a second, the bodies not received in time are given up. One timer for all requests: a timer
        per request (asyncio.timeout) held 9 % of the OCSP listener's samples under load."""
        try:
            now = self.loop.time()
            for task, deadline in list(self.receiving.items()):
                if deadline <= now:
                    del self.receiving[task]  # how the request tells this cancellation from its client's
                    task.cancel()
        finally:
            self.loop.call_later(1, self._expire)  # whatever happened: the next bodies need it too

    def __rsgi_del__(self, loop) -> None:
        for _ in range(self.threads):
            self.jobs.put(None)

    async def __rsgi__(self, scope, protocol) -> None:
        if scope.proto != "http":  # websockets are off; nothing else is defined
            return
        length = scope.headers.get("content-length")
        declared = None if length is None else content_length(length)
        if length is not None and declared is None:
            protocol.response_bytes(400, _TEXT, b"invalid Content-Length\n")
            return
        if declared is not None and declared > self.max_body:
            if not scope.path.startswith(self.refused_by_app):
                protocol.response_bytes(413, _TEXT, b"request body too large\n")
                return
            body = None
        elif declared is None and "transfer-encoding" not in scope.headers:
            body = b""  # RFC 9112 6.3: no length, not chunked: no body (every GET)
        else:
            task = asyncio.current_task()
            self.receiving[task] = self.loop.time() + self.body_seconds
            try:
                # A declared length is at most max_body: read at once; chunked, chunk by chunk to the limit.
                body = await (protocol() if declared is not None else _body(protocol, self.max_body))
            except asyncio.CancelledError:
                if task in self.receiving:  # not given up here: the client went away
                    raise
                protocol.response_bytes(408, _TEXT, b"request body not received in time\n")
                return
            except _TooLarge:  # chunked, without a length
                protocol.response_bytes(413, _TEXT, b"request body too large\n")
                return
            finally:
                self.receiving.pop(task, None)
            if declared is not None and len(body) != declared:  # the client went away in the middle
                protocol.response_bytes(400, _TEXT, b"request body shorter than its Content-Length\n")
                return
        answer = self.loop.create_future()
        self.jobs.put((answer, _environ(scope, body)))
        status, headers, content = await answer
        if body is None:
            headers = [*headers, ("connection", "close")]  # the body it did not read must not be taken as a request
        protocol.response_bytes(status, headers, content)

    def _work(self) -> None:
        """One of the application's threads. A queue and call_soon_threadsafe, not run_in_executor, whose
        futures cost about 40 us more per request (a trivial application on one pinned core: 8,300 against
        12,100 requests/s)."""
        while (job := self.jobs.get()) is not None:
            answer, environ = job
            try:
                result = self._call(environ)
            except BaseException as exc:  # noqa: BLE001 - handed to the request's coroutine, which raises it
                self.loop.call_soon_threadsafe(_settle, answer, None, exc)
            else:
                self.loop.call_soon_threadsafe(_settle, answer, result, None)

    def _call(self, environ: dict) -> tuple[int, list[tuple[str, str]], bytes]:
        """The WSGI call, its answer read and closed in this thread (Django's end-of-request work)."""
        started: list = []

        def start_response(status: str, headers: list, exc_info=None) -> None:
            started[:] = [status, headers]

        result = self.wsgi(environ, start_response)
        try:
            content = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return int(started[0].split(" ", 1)[0]), started[1], content


def _settle(answer: asyncio.Future, result, exc: BaseException | None) -> None:
    if answer.cancelled():  # the client went away
        return
    if exc is not None:
        answer.set_exception(exc)
    else:
        answer.set_result(result)


class _TooLarge(Exception):
    pass


async def _body(protocol, limit: int) -> bytes:
    """The whole body, chunked ones too, up to `limit` bytes."""
    chunks, size = [], 0
    async for chunk in protocol:
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _split(address: str) -> tuple[str, str]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), port


def _environ(scope, body: bytes | None) -> dict:
    """The WSGI environ (PEP 3333) of an RSGI request: the path as latin-1 of its UTF-8 bytes, headers as
    HTTP_* (none with an underscore), repeated headers joined with a comma (Cookie with a semicolon)."""
    server_name, server_port = _split(scope.server)
    remote_addr, remote_port = _split(scope.client)
    environ = {
        "REQUEST_METHOD": scope.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": scope.path.encode("utf-8").decode("latin-1"),
        "QUERY_STRING": scope.query_string,
        "SERVER_NAME": server_name,
        "SERVER_PORT": server_port,
        "SERVER_PROTOCOL": f"HTTP/{scope.http_version}",
        "REMOTE_ADDR": remote_addr,
        "REMOTE_PORT": remote_port,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.scheme,
        "wsgi.input": io.BytesIO(body or b""),
        "wsgi.input_terminated": True,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "CONTENT_LENGTH": str(len(body)) if body else "",
    }
    for name, value in scope.headers.items():
        if "_" in name:  # it would read as the header with a hyphen there (Django's own server drops them too)
            continue
        key = name.upper().replace("-", "_")
        if key == "CONTENT_LENGTH":
            if body is None:  # as declared: what the application refuses it by
                environ[key] = value
            continue
        if key != "CONTENT_TYPE":
            key = "HTTP_" + key
        if key in environ:
            value = environ[key] + ("; " if key == "HTTP_COOKIE" else ",") + value
        environ[key] = value
    if scope.authority and "HTTP_HOST" not in environ:  # HTTP/2's :authority
        environ["HTTP_HOST"] = scope.authority
    return environ


def get_application() -> Application:
    """The HTTPS site: the largest body a call takes is an enrollment call's, which it refuses itself."""
    from autoenroll.protocol.messages import API_PREFIX
    from autoenroll.server.wsgi import get_application as get_wsgi_application

    wsgi = get_wsgi_application()  # sets Django up: the boundary's module needs it
    from autoenroll.server.enrollment.boundary import MAX_BODY_BYTES

    return _around(wsgi, max_body=MAX_BODY_BYTES, refused_by_app=API_PREFIX + "/")


def get_publication_application() -> Application:
    """The plain-HTTP publication listener: its only bodies are OCSP requests, which any relying party sends
    and which an OCSP answer refuses when too large (malformedRequest)."""
    from autoenroll.pki.ocsp import MAX_OCSP_REQUEST_SIZE
    from autoenroll.server.certificates.wsgi import get_publication_application as get_wsgi_application

    return _around(get_wsgi_application(), max_body=MAX_OCSP_REQUEST_SIZE, refused_by_app="/ocsp/")


def _around(wsgi, *, max_body: int, refused_by_app: str) -> Application:
    from django.conf import settings

    config = settings.CONFIG
    return Application(
        wsgi, config.threads, body_seconds=config.request_body_seconds, max_body=max_body, refused_by_app=refused_by_app
    )
