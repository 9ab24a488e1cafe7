"""`manage.py rotate_dek --org SLUG`: a new data key for one organisation, blobs re-encrypted."""

import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from accounts.models import Organization
from archive.keys import rotate_dek
from archive.models import DataKey, Instance


class Command(BaseCommand):
    help = ("Give an organisation a new active DEK and re-encrypt its blobs under it; the old DEK is "
            "retired when no blob uses it. Interrupted, run it again to continue (audited).")

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, metavar="SLUG", help="The organisation whose DEK to rotate.")
        parser.add_argument("--no-progress", action="store_true", help="Do not draw a progress bar.")

    def handle(self, *args, org, no_progress=False, **options):
        organization = Organization.objects.filter(slug=org).first()
        if organization is None:
            raise CommandError(f"no organisation with slug {org!r}")
        active = DataKey.objects.filter(organization=organization, state=DataKey.State.ACTIVE).first()
        todo = Instance.objects.filter(organization=organization)
        if active is not None and DataKey.objects.filter(organization=organization, state=DataKey.State.RETIRING).exists():
            todo = todo.exclude(data_key=active)  # resuming: only what is left
        bar = tqdm(total=todo.count(), unit="blob", file=getattr(self.stderr, "_out", sys.stderr),
                   disable=no_progress or None, mininterval=0.5)
        try:
            report = rotate_dek(organization=organization, progress=lambda: bar.update(1))
        finally:
            bar.close()
        verb = "resumed" if report.resumed else "started"
        self.stdout.write(f"DEK rotation {verb}: new key {report.new_key_id}; {report.moved} blobs re-encrypted, "
                          f"{report.skipped} already done")
        if report.retired:
            self.stdout.write(f"retired: {', '.join(report.retired)}")
        if report.remaining:
            self.stderr.write(f"{report.remaining} instances are still under an old key; run the command again")
            raise SystemExit(1)
