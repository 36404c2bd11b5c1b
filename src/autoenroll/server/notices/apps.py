from django.apps import AppConfig


class NoticesConfig(AppConfig):
    name = "autoenroll.server.notices"
    label = "notices"
    verbose_name = "Expiry notices"
