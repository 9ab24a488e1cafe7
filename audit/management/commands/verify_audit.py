from django.core.management.base import BaseCommand

from audit.verification import verify_chain, verify_latest_checkpoint


class Command(BaseCommand):
    help = "Walk the audit hash chain and the latest checkpoint; exit 1 at the first broken link."

    def handle(self, *args, **options):
        chain = verify_chain()
        checkpoint = verify_latest_checkpoint()
        if chain.ok:
            self.stdout.write(f"chain intact: {chain.checked} events, head #{chain.head_sequence}")
        else:
            self.stderr.write(f"chain BROKEN at event #{chain.broken_at}: {chain.reason}")
        if checkpoint.ok:
            self.stdout.write(f"checkpoint: {checkpoint.reason}")
        else:
            self.stderr.write(f"checkpoint FAILED: {checkpoint.reason}")
        if not (chain.ok and checkpoint.ok):
            raise SystemExit(1)
