from django.apps import AppConfig


class ServerConfig(AppConfig):
    """The project itself, as an app: it holds the project-wide commands (init, serve)."""

    name = "autoenroll.server"
    label = "autoenroll"
    verbose_name = "autoenroll"
