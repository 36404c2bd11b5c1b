"""`autoenroll-server notify`: mail the expiry notices that are due (for cron); `--watch` is what `serve` runs."""

from __future__ import annotations

from collections.abc import Iterator

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from autoenroll.server.notices import notify
from autoenroll.server.utils.commands import watch


class Command(BaseCommand):
    help = (
        "Mail the holders of certificates not yet renewed at 30, 15 and 2 days before expiry "
        "(expiry_notice_days), once each, and each customer's admins a daily digest."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--check", action="store_true", help="only connect to the SMTP server and log in")
        parser.add_argument(
            "--watch", type=int, metavar="SECONDS", help="keep running: check SMTP, then notify every SECONDS"
        )

    def handle(self, *args, check, watch, **options) -> None:
        config = settings.CONFIG
        try:
            if check or watch:
                self.stdout.write(notify.check_smtp(config))
            if check:
                return
            if watch:
                self._watch(watch)
                return
            self._print(notify.run(config))
        except notify.NoticeError as exc:
            raise CommandError(str(exc)) from None

    def _print(self, report: notify.NotifyReport) -> None:
        for line in _lines(report):
            self.stdout.write(line)
        for failure in report.failed:
            self.stderr.write(f"not sent (tried again next run): {failure}")

    def _watch(self, seconds: int) -> None:
        def sent() -> Iterator[str]:  # (each mail not sent is logged where it failed, as a warning)
            report = notify.run(settings.CONFIG)
            if report.notices or report.digests or report.failed:
                yield from _lines(report)

        watch(seconds, ("expiry notices", sent))


def _lines(report: notify.NotifyReport) -> Iterator[str]:
    if report.elsewhere:
        yield "another server is sending the notices now"
    else:
        yield f"{report.notices} expiry notices and {report.digests} digests sent"
