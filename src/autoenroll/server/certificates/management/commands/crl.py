"""`autoenroll-server crl`: regenerate the CRLs and print their facts (also the scheduled path)."""

from __future__ import annotations

from collections.abc import Iterator

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from autoenroll import pki
from autoenroll.server.certificates import authority, publication
from autoenroll.server.certificates.models import CertificateAuthority, RevocationList
from autoenroll.server.config import ConfigError
from autoenroll.server.utils.commands import watch


class Command(BaseCommand):
    help = (
        "Regenerate the CRL of every CA (or of --ca) and print CA, number, thisUpdate, nextUpdate and entries. "
        "With --due, only the CRLs that miss a revocation or are past half their lifetime (for cron/timers)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--ca", help="only this CA (its name, as in the CRL URL)")
        parser.add_argument("--due", action="store_true", help="only regenerate CRLs that need it")
        parser.add_argument(
            "--watch",
            type=int,
            metavar="SECONDS",
            help="keep running: every SECONDS, regenerate the CRLs that are due and sign ahead the OCSP responses "
            "that are due (what `serve` runs)",
        )

    def handle(self, *args, ca, due, watch, **options) -> None:
        try:
            if watch:
                self._watch(watch)
                return
            cas = CertificateAuthority.objects.order_by("pk")
            if ca:
                cas = cas.filter(name=ca)
                if not cas.exists():
                    raise CommandError(f"no CA named {ca!r}")
            elif not cas.exists():
                raise CommandError("there is no CA: run `autoenroll-server init`")
            for row in cas:
                for partition in publication.crl_scopes(row):
                    before = publication.latest_crl(row, partition)
                    crl = publication.publish_crl(row, settings.CONFIG, force=not due, partition=partition)
                    self._print(row, crl, regenerated=before is None or crl.pk != before.pk)
        except (authority.CAError, ConfigError, pki.PKIError) as exc:
            raise CommandError(str(exc)) from None

    def _print(self, ca: CertificateAuthority, crl: RevocationList, *, regenerated: bool) -> None:
        url = pki.PublicationURLs.for_ca(settings.CONFIG.publication_url, ca.name).crl
        if crl.partition is not None:
            url = pki.crl_partition_url(url, crl.partition)
        self.stdout.write(f"CA          {ca.name}  ({ca.subject})")
        if crl.partition is not None:
            self.stdout.write(f"partition   {crl.partition}")
        self.stdout.write(f"number      {crl.number}{'' if regenerated else '  (unchanged: still current)'}")
        self.stdout.write(f"thisUpdate  {crl.this_update:%Y-%m-%dT%H:%M:%SZ}")
        self.stdout.write(f"nextUpdate  {crl.next_update:%Y-%m-%dT%H:%M:%SZ}")
        self.stdout.write(f"entries     {crl.entries}")
        self.stdout.write(f"size        {len(crl.der)} bytes")
        self.stdout.write(f"url         {url}")
        self.stdout.write("")

    def _watch(self, seconds: int) -> None:
        watch(
            seconds,
            ("CRL refresh", self._refreshed),
            ("signing OCSP responses ahead", self._presigned),
        )

    @staticmethod
    def _refreshed() -> Iterator[str]:
        for crl in publication.refresh_crls(settings.CONFIG, force=False):
            yield f"{crl}, nextUpdate {crl.next_update:%Y-%m-%d %H:%M}"

    @staticmethod
    def _presigned() -> Iterator[str]:
        if signed := publication.presign_ocsp(settings.CONFIG):  # (the responder signs on request meanwhile)
            yield f"{signed} OCSP responses signed ahead"
