from django.core.management.base import BaseCommand

from sharing.services import expire_shares


class Command(BaseCommand):
    help = "Mark shares past their expiry as expired, end their sessions and purge data older than the retention window."

    def add_arguments(self, parser):
        parser.add_argument(
            "--retention-days", type=int, default=None,
            help="Purge sessions, download links and access history of shares ended longer ago than this "
            "(default: LIGHTBOX_SHARE_RETENTION_DAYS).",
        )

    def handle(self, *args, retention_days=None, **options):
        if retention_days is not None and retention_days < 0:
            self.stderr.write("--retention-days must be 0 or more")
            raise SystemExit(2)
        result = expire_shares(retention_days=retention_days)
        self.stdout.write(f"expired {result['expired']} share(s); purged {result['purged']} record(s)")
