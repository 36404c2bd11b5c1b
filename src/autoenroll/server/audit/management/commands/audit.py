"""`autoenroll-server audit seal|verify|export`: the tamper-evident audit trail (see audit.trail)."""

from __future__ import annotations

import sys
from collections.abc import Iterator

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from autoenroll.server.audit import trail
from autoenroll.server.utils.commands import watch


class Command(BaseCommand):
    help = "The audit trail: seal new records into the chain, verify it, or export it as JSON lines."

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        seal = sub.add_parser("seal", help="chain the new records and sign a checkpoint (serve does it every minute)")
        seal.add_argument("--watch", type=int, metavar="SECONDS", help="keep running: seal every SECONDS")
        sub.add_parser("verify", help="walk the chain; name the first record changed, deleted or inserted")
        sub.add_parser("export", help="the chain as JSON lines (records, then checkpoints), for a SIEM")

    def handle(self, *args, action, **options) -> None:
        if action == "seal":
            if options.get("watch"):
                self._watch(options["watch"])
            else:
                self._seal()
        elif action == "verify":
            report = trail.verify()
            if report.intact:
                self.stdout.write(f"intact: {report.records} records, {report.checkpoints} signed checkpoints")
                return
            for problem in report.problems:
                self.stdout.write(problem)
            raise CommandError(f"the audit trail was tampered with: {len(report.problems)} problem(s), first: "
                               f"{report.problems[0]}")  # fmt: skip
        else:
            for line in trail.export():
                sys.stdout.write(line + "\n")

    def _seal(self) -> None:
        for line in self._sealed():
            self.stdout.write(line)

    @staticmethod
    def _sealed() -> Iterator[str]:
        report = trail.seal(settings.CONFIG)
        if report.elsewhere:
            yield "another server is sealing the trail now"
        elif report.checkpoint is not None:
            yield f"{report.copied} events copied, {report.chained} records chained, checkpoint at #{report.checkpoint}"

    def _watch(self, seconds: int) -> None:
        watch(seconds, ("sealing the audit trail", self._sealed))
