"""autoenroll: S/MIME certificates for every Active Directory user, with no clicks.

`autoenroll.agent` is the logon client, `autoenroll.server` the Django server; both speak
`autoenroll.protocol`, and the server signs through `autoenroll.pki`.
"""

__version__ = "0.1.0"
