"""`manage.py derive_fast_copies`: build fast-decode copies of JPEG 2000 instances now."""

from django.core.management.base import BaseCommand

from viewer.fast_copies import derive_pending, pending


class Command(BaseCommand):
    help = ("Transcode JPEG 2000 instances that have no fast-decode copy yet to RLE Lossless (encrypted, "
            "beside the untouched original). The background job does the same every 30 s; this backfills.")

    def add_arguments(self, parser):
        parser.add_argument("--batch", type=int, default=50, help="Instances per batch (default 50).")

    def handle(self, *args, batch=50, **options):
        created = failed = 0
        while pending(1).exists():
            report = derive_pending(max(1, batch))
            created, failed = created + report.created, failed + report.failed
            if not report.created and not report.failed:
                break
        self.stdout.write(f"derived {created} fast-decode copies; {failed} instances could not be transcoded")
