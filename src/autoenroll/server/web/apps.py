from django.apps import AppConfig


class WebConfig(AppConfig):
    name = "autoenroll.server.web"
    label = "web"
    verbose_name = "Admin pages"
