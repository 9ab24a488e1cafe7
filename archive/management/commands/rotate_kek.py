"""`manage.py rotate_kek`: re-wrap every data key under a new key-encryption key."""

from django.core.management.base import BaseCommand

from archive.keys import rotate_kek


class Command(BaseCommand):
    help = "Make a new KEK current, re-wrap every DEK under it, then retire the old KEKs (audited)."

    def add_arguments(self, parser):
        parser.add_argument("--resume", action="store_true",
                            help="Do not make a new KEK; finish re-wrapping under the current one.")
        parser.add_argument("--keep-old", action="store_true", help="Keep the old KEKs (do not retire them).")

    def handle(self, *args, resume=False, keep_old=False, **options):
        report = rotate_kek(resume=resume, retire_old=not keep_old)
        self.stdout.write(f"current KEK: {report.new_kek_id}; {report.rewrapped} data keys re-wrapped")
        if report.retired:
            self.stdout.write(f"retired KEKs: {', '.join(report.retired)}")
