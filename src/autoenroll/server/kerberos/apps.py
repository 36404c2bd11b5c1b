from django.apps import AppConfig


class KerberosConfig(AppConfig):
    name = "autoenroll.server.kerberos"
    label = "kerberos"
    verbose_name = "Kerberos"
