"""Throw-away Samba AD DC test bed (realm TEST.COM) for tests, the demo and benchmarks.

Never imported by the product at run time; it only needs root, the Samba/MIT Kerberos Debian packages,
``cryptography`` and ``ldap3``.
"""

from autoenroll.testbed.samba import (
    ADMIN_PASSWORD,
    BASE_DN,
    DC_FQDN,
    DOMAIN,
    NETBIOS,
    REALM,
    SERVICE_ACCOUNT,
    SERVICE_ACCOUNT_DN,
    SERVICE_ACCOUNT_PASSWORD,
    SERVICE_SPNS,
    USERS,
    USERS_DN,
    SambaDC,
    TestbedError,
    TestUser,
    attach,
    available,
    ensure_template,
    start,
)

__all__ = [
    "ADMIN_PASSWORD",
    "BASE_DN",
    "DC_FQDN",
    "DOMAIN",
    "NETBIOS",
    "REALM",
    "SERVICE_ACCOUNT",
    "SERVICE_ACCOUNT_DN",
    "SERVICE_ACCOUNT_PASSWORD",
    "SERVICE_SPNS",
    "USERS",
    "USERS_DN",
    "SambaDC",
    "TestUser",
    "TestbedError",
    "attach",
    "available",
    "ensure_template",
    "start",
]
