from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "autoenroll.server.api"
    label = "api"
    verbose_name = "REST API"
