"""Fixtures for the enrollment tests: the test process holds real tickets from the test AD."""

from __future__ import annotations

import os

import pytest

from enroll_helpers import Agent


@pytest.fixture(scope="session")
def kerberos_env(samba_ad):
    """The test process is the agent and the server: both find the KDC and a private replay cache."""
    rcache = samba_ad.workdir / "rcache-server"
    rcache.mkdir(exist_ok=True)
    saved = {k: os.environ.get(k) for k in ("KRB5_CONFIG", "KRB5RCACHEDIR")}
    os.environ.update(KRB5_CONFIG=str(samba_ad.krb5_conf), KRB5RCACHEDIR=str(rcache))
    yield samba_ad
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def agent_for(kerberos_env):
    """agent_for("user1") -> an Agent holding user1's ticket."""
    return lambda user: Agent(kerberos_env.kinit(user))


@pytest.fixture
def user1(agent_for) -> Agent:
    return agent_for("user1")
