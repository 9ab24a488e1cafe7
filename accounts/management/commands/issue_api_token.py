from django.core.management.base import BaseCommand, CommandError

from accounts.models import User
from accounts.tokens import issue_api_token


class Command(BaseCommand):
    help = "Issue an API token for EMAIL and print only the token on stdout."

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("--write", action="store_true", help="Allow STOW-RS (read and write).")
        parser.add_argument("--days", type=int, default=30, help="Days until it expires (1-365).")
        parser.add_argument("--name", default="", help="A label to recognise the token by.")

    def handle(self, email, write=False, days=30, name="", **options):
        if not 1 <= days <= 365:
            raise CommandError("--days must be between 1 and 365")
        user = User.objects.filter(email=email.lower(), is_active=True).first()
        if user is None:
            raise CommandError(f"no active user with e-mail {email}")
        _, token = issue_api_token(user=user, write=write, days=days, name=name)
        self.stdout.write(token)
