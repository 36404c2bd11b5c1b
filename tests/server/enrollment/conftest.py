"""Fixtures for the enrollment tests: the test process holds real tickets from the test AD."""

from __future__ import annotations

import pytest
from ldap3 import BASE, MODIFY_ADD

from autoenroll.testbed import samba
from enroll_helpers import Agent


@pytest.fixture
def agent_for(kerberos_env):
    """agent_for("user1") -> an Agent holding user1's ticket."""
    return lambda user: Agent(kerberos_env.kinit(user))


@pytest.fixture
def user1(agent_for) -> Agent:
    return agent_for("user1")


@pytest.fixture(scope="session")
def ccm_is_a_cert_publisher(samba_ad):
    """In AD the Cert Publishers group may write userCertificate; the service account joins it."""
    conn = samba_ad.ldap_admin()
    group = f"CN=Cert Publishers,{samba.USERS_DN}"
    conn.search(group, "(objectClass=group)", BASE, attributes=["member"])
    if samba.SERVICE_ACCOUNT_DN not in conn.entries[0].member.values:
        assert conn.modify(group, {"member": [(MODIFY_ADD, [samba.SERVICE_ACCOUNT_DN])]}), conn.result
    conn.unbind()


def published(samba_ad, dn: str) -> set[bytes]:
    """The DER certificates in the userCertificate of `dn`, as Outlook would find them."""
    conn = samba_ad.ldap_admin()
    conn.search(dn, "(objectClass=user)", BASE, attributes=["userCertificate"])
    values = set(conn.entries[0].userCertificate.values) if "userCertificate" in conn.entries[0] else set()
    conn.unbind()
    return values
