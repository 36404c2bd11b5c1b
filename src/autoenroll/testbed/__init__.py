"""Throw-away Samba AD DC test bed (realm TEST.COM) for tests, the demo and benchmarks: `samba` starts a
DC on a loopback address, `server` a configured autoenroll server against it.

Never imported by the product at run time; it only needs root, the Samba/MIT Kerberos Debian packages,
``cryptography`` and ``ldap3``.
"""
