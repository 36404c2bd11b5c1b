"""The Django server: tenancy, directory, Kerberos, enrollment, certificates."""
