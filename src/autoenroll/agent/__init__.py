"""The agent: the logon client that replaces the guide's ExchangeEnroll.vbs (``autoenroll run``).

Pure Python, no Django and no ``autoenroll.server``: it is installed on every desktop. Modules import
their heavy dependencies (Kerberos, HTTP, key generation) lazily, so that the logon with nothing to do
stays quick.
"""
