"""`autoenroll-server restore FILE`: a backup into an empty data directory and database (same CA passphrase)."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from autoenroll.server.backup import BackupError, restore
from autoenroll.server.config import ConfigError


class Command(BaseCommand):
    help = (
        "Restore a backup made by `backup` into this server's empty data directory and database; "
        "the CA passphrase must be the backed-up server's."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", type=Path)

    def handle(self, *args, file: Path, **options) -> None:
        try:
            manifest, settings_file, differences = restore(settings.CONFIG, file)
        except (BackupError, ConfigError, OSError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"restored the backup of {manifest['created']}: {manifest['certificates']} certificates into "
            f"{settings.CONFIG.data_dir}; CRL numbers continue from the time of the restore. "
            "Certificates the lost server issued after the backup are unknown here: their holders re-enroll."
        )
        self.stdout.write(f"the backed-up server's settings are in {settings_file}")
        if differences:
            self.stdout.write(self.style.WARNING("settings that differ from the backed-up server's:"))
            for line in differences:
                self.stdout.write(f"  {line}")
