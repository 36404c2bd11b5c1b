from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "autoenroll.server.audit"
    label = "audit"
    verbose_name = "Audit trail"

    def ready(self) -> None:
        from . import trail

        trail.watch_configuration()
