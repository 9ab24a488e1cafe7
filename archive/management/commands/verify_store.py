"""`manage.py verify_store`: decrypt every instance's blob and check it against its SHA-256."""

import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from accounts.models import Organization
from archive.models import Instance
from archive.services import verify_store


class Command(BaseCommand):
    help = ("Decrypt and authenticate every stored instance and compare its SHA-256 with the one recorded "
            "at ingest; list each mismatch and exit 1 if there is any.")

    def add_arguments(self, parser):
        parser.add_argument("--org", metavar="SLUG", help="Only this organisation's instances.")
        parser.add_argument("--no-progress", action="store_true", help="Do not draw a progress bar.")

    def handle(self, *args, org=None, no_progress=False, **options):
        organization = None
        if org:
            organization = Organization.objects.filter(slug=org).first()
            if organization is None:
                raise CommandError(f"no organisation with slug {org!r}")
        rows = Instance.objects.all() if organization is None else Instance.objects.filter(organization=organization)
        bar = tqdm(total=rows.count(), unit="blob", file=getattr(self.stderr, "_out", sys.stderr),
                   disable=no_progress or None, mininterval=0.5)
        try:
            report = verify_store(organization=organization, on_checked=lambda result: bar.update(1))
        finally:
            bar.close()
        self.stdout.write(f"checked {report.checked} instances and {report.checked_copies} derived copies "
                          f"({report.bytes / 1e6:.1f} MB): "
                          f"{len(report.problems)} problems")
        for problem in report.problems:
            # PRIVACY: ids and UIDs only.
            self.stdout.write(f"  instance {problem.instance_id} ({problem.sop_instance_uid}), blob {problem.blob_id}: "
                              f"{problem.error}")
        if report.problems:
            raise SystemExit(1)
