from django.core.management.base import BaseCommand, CommandError

from accounts.models import Organization
from accounts.scim.auth import issue_scim_token


class Command(BaseCommand):
    help = "Create a SCIM client for an organisation and print only its bearer token (shown once)."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="The organisation's slug.")
        parser.add_argument("--name", required=True, help="A label for the identity provider, e.g. 'Okta'.")

    def handle(self, org, name, **options):
        organization = Organization.objects.filter(slug=org).first()
        if organization is None:
            raise CommandError(f"no organisation with slug {org!r}")
        name = name.strip()
        if not name or len(name) > 100:
            raise CommandError("--name must be 1 to 100 characters")
        _, token = issue_scim_token(organization=organization, name=name)
        self.stdout.write(token)
