from django.apps import AppConfig


class EnrollmentConfig(AppConfig):
    name = "autoenroll.server.enrollment"
    label = "enrollment"
    verbose_name = "Enrollment"

    def ready(self) -> None:
        from . import configuration

        configuration.watch()
