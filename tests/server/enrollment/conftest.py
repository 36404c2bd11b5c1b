"""Fixtures for the enrollment tests: the test process holds real tickets from the test AD."""

from __future__ import annotations

import pytest

from enroll_helpers import Agent


@pytest.fixture
def agent_for(kerberos_env):
    """agent_for("user1") -> an Agent holding user1's ticket."""
    return lambda user: Agent(kerberos_env.kinit(user))


@pytest.fixture
def user1(agent_for) -> Agent:
    return agent_for("user1")
