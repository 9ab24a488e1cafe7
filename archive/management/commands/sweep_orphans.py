"""`manage.py sweep_orphans`: delete blobs that no instance references, after a grace period."""

from django.core.management.base import BaseCommand, CommandError

from archive.services import sweep_orphans


class Command(BaseCommand):
    help = ("Delete encrypted blobs that no instance references (left by a crash between a blob write "
            "and its database commit, or by an interrupted DEK rotation), once older than the grace period.")

    def add_arguments(self, parser):
        parser.add_argument("--grace", type=float, default=3600, metavar="SECONDS",
                            help="Only blobs older than this (default 3600: one hour).")
        parser.add_argument("--dry-run", action="store_true", help="List what would be deleted; delete nothing.")

    def handle(self, *args, grace=3600, dry_run=False, **options):
        if grace < 0:
            raise CommandError("--grace must not be negative")
        report = sweep_orphans(grace_seconds=grace, dry_run=dry_run)
        verb = "would delete" if dry_run else "deleted"
        for blob_id in report.orphans:
            self.stdout.write(f"  {verb} {blob_id}")
        self.stdout.write(f"{verb} {len(report.orphans)} orphaned blobs and {report.partial_writes} abandoned "
                          f"partial writes; {report.too_young} unreferenced blobs are younger than {grace:g} s")
