"""`autoenroll-server backup FILE`: the database, the CA and responder keys (encrypted), the configuration's
secrets (encrypted with the CA passphrase), while the server serves. See autoenroll.server.backup."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from autoenroll.server.backup import BackupError, backup
from autoenroll.server.config import ConfigError


class Command(BaseCommand):
    help = "Write a backup of this server to FILE (mode 0600); never the CA passphrase, which restore needs."

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", type=Path)

    def handle(self, *args, file: Path, **options) -> None:
        try:
            manifest = backup(settings.CONFIG, file)
        except (BackupError, ConfigError, OSError) as exc:
            raise CommandError(str(exc)) from None
        numbers = ", ".join(f"{name} #{number}" for name, number in manifest.crl_numbers.items())
        self.stdout.write(
            f"{file}: {manifest.database} database with {manifest.certificates} certificates, CRLs {numbers}"
        )
