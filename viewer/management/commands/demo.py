"""`manage.py demo`: demo organisation, one user per role, and synthetic studies.

It lives in `viewer` because it spans apps (accounts for users, archive for studies) and
`viewer` is allowed to use both; `archive` must not depend on anything above it.
"""

import os
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from accounts.demo import ensure_demo_users, save_credentials


def credentials_path() -> Path:
    return Path(settings.DATA_DIR) / "secrets" / "demo-credentials.txt"


class Command(BaseCommand):
    help = "Create the demo organisation, one demo user per role, and the synthetic demo studies."

    def add_arguments(self, parser):
        parser.add_argument("--show", action="store_true", help="Only print how to sign in.")
        parser.add_argument("--small", action="store_true", help="Tiny studies (for tests and CI).")
        parser.add_argument("--no-studies", action="store_true", help="Create users only.")
        parser.add_argument(
            "--if-empty", action="store_true", help="Load demo data only when the database has no users."
        )

    def handle(self, *args, show=False, small=False, no_studies=False, if_empty=False, **options):
        if settings.IS_PRODUCTION:
            raise CommandError("demo refuses to run with LIGHTBOX_ENV=production")
        if if_empty and get_user_model().objects.exists():
            show = True
        if not show:
            _, credentials = ensure_demo_users()
            save_credentials(credentials_path(), credentials)
            if not no_studies:
                self._studies(small=small or settings.LIGHTBOX_DEMO_SIZE == "small")
        self._print_sign_in()

    def _studies(self, *, small: bool) -> None:
        from viewer.demo_studies import load_demo_studies

        summary = load_demo_studies(small=small, stdout=self.stdout)
        self.stdout.write(f"Demo studies: {summary}")

    def _print_sign_in(self) -> None:
        path = credentials_path()
        self.stdout.write("")
        port = os.environ.get("PORT", "8000")
        self.stdout.write(f"Sign in at http://127.0.0.1:{port}/ with one of these demo accounts:")
        if path.exists():
            self.stdout.write(
                "Each account also needs a code from an authenticator app: add the base32 TOTP secret "
                "(or open the otpauth:// link) in FreeOTP, Aegis, Google Authenticator or similar."
            )
            self.stdout.write(
                f"  {'role':<10} {'e-mail':<26} {'password':<28} {'TOTP secret (base32)':<32}  otpauth URI"
            )
            for line in path.read_text().splitlines():
                self.stdout.write("  " + line)
        else:
            self.stdout.write("  (no demo credentials recorded; run `manage.py demo` on an empty database)")
        self.stdout.write("")
