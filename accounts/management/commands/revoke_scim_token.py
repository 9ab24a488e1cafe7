from django.core.management.base import BaseCommand, CommandError

from accounts.scim.auth import revoke_scim_client


class Command(BaseCommand):
    help = "Revoke a SCIM client's bearer token, given the first 12 characters of the token (its prefix)."

    def add_arguments(self, parser):
        parser.add_argument("prefix", help="The token's first 12 characters, e.g. lbx_scim_AbC.")
        parser.add_argument("--org", required=True, help="The organisation's slug.")

    def handle(self, prefix, org, **options):
        revoked = revoke_scim_client(organization_slug=org, prefix=prefix)
        if revoked == 0:
            raise CommandError("no unrevoked SCIM token of that organisation starts with that prefix")
        self.stdout.write(f"revoked {revoked} SCIM token(s)")
