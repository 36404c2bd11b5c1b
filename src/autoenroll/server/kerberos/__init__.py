"""Kerberos realms the server accepts tickets from (guide 2.2 "Autoenrollment" and 6.1 login.conf)."""
