from django.apps import AppConfig


class EnrollmentConfig(AppConfig):
    name = "autoenroll.server.enrollment"
    label = "enrollment"
    verbose_name = "Enrollment"

    def ready(self) -> None:
        from django.db.models.signals import pre_delete

        from autoenroll.server.directory.models import Person

        from . import configuration, lifecycle

        configuration.watch()
        pre_delete.connect(lifecycle.revoke_on_deletion, sender=Person, dispatch_uid="revoke-on-person-deletion")
