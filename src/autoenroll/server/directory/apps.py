from django.apps import AppConfig


class DirectoryConfig(AppConfig):
    name = "autoenroll.server.directory"
    label = "directory"
    verbose_name = "Active Directory"
