"""Suite-wide fixtures: only the Samba AD DC test bed lives here (Django fixtures go in tests/server/)."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator

import pytest

from autoenroll.testbed.samba import SambaDC, available, start


def pytest_configure(config: pytest.Config) -> None:
    """SIGTERM (scripts/test stopping its PostgreSQL phase) ends the run as Ctrl-C does: with every
    fixture's teardown, so that no DC or server it started outlives it in a session of its own."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that (even indirectly) use the DC get the ``samba`` marker, so ``-m "not samba"`` works."""
    for item in items:
        if "samba_ad" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.samba)


def _free_dc_ip() -> str:
    """127.0.0.2, or the next loopback address whose Kerberos and LDAP ports are free (another test
    session, a benchmark or a demo may hold one)."""
    for last in range(2, 60):
        ip = f"127.0.0.{last}"
        if not any(_listening(ip, port) for port in (88, 389, 636)):
            return ip
    raise RuntimeError("no free loopback address for the test DC in 127.0.0.2-59")


def _listening(ip: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((ip, port)) == 0


@pytest.fixture(scope="session")
def samba_ad(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SambaDC]:
    """One real Samba AD DC per test session, cloned from the cached template (~0.5 s).

    Serves on 127.0.0.2 or the next free loopback address, so a demo DC on 127.0.0.1 and parallel
    sessions can keep running; override with
    AUTOENROLL_TEST_DC_IP. Skips when the machine cannot run it, unless AUTOENROLL_REQUIRE_SAMBA=1 (CI).
    """
    ok, reason = available()
    if not ok:
        if os.environ.get("AUTOENROLL_REQUIRE_SAMBA") == "1":
            pytest.fail(f"AUTOENROLL_REQUIRE_SAMBA=1 but the Samba test bed cannot run: {reason}")
        pytest.skip(f"Samba AD DC test bed unavailable: {reason}")
    dc = start(tmp_path_factory.mktemp("samba-ad"), ip=os.environ.get("AUTOENROLL_TEST_DC_IP") or _free_dc_ip())
    try:
        yield dc
    finally:
        dc.stop()
