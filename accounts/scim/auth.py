"""Bearer-token authentication of SCIM clients (one identity provider per organisation).

django-scim2 runs `SCIM_SERVICE_PROVIDER["AUTH_CHECK_MIDDLEWARE"]` around every SCIM view, so
`ScimBearerAuth` is the only way in: it applies to the SCIM views alone, whatever the URL prefix,
and no session, cookie or CSRF token is ever consulted.
"""

from __future__ import annotations

import json
import secrets
from datetime import timedelta

from django.conf import settings
from django.http import HttpResponse
from django.utils import timezone

from accounts.models import ScimClient
from accounts.tokens import hash_token
from audit.models import ActorType, Outcome
from audit.services import record

SCIM_TOKEN_PREFIX = "lbx_scim_"  # noqa: S105  (a public marker, not a secret)
SCIM_CONTENT_TYPE = "application/scim+json"
_ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"


def issue_scim_token(*, organization, name: str) -> tuple[ScimClient, str]:
    """Create a SCIM client for `organization`; return it and the clear token (shown only once)."""
    # SECURITY: 256 bits from the OS CSPRNG; only the SHA-256 is stored, the clear value never logged.
    token = SCIM_TOKEN_PREFIX + secrets.token_urlsafe(32)
    client = ScimClient.objects.create(
        organization=organization, name=name, token_hash=hash_token(token), prefix=token[:12]
    )
    record(action="scim.client_issued", actor=None, actor_type=ActorType.SYSTEM, organization=organization,
           object_type="scim_client", object_id=client.pk, details={"scim_client": client.pk})
    return client, token


def revoke_scim_client(*, organization_slug: str, prefix: str) -> int:
    """Revoke the organisation's unrevoked SCIM clients whose token starts with `prefix`; return how many."""
    if len(prefix) < 12:
        return 0
    revoked = 0
    for client in ScimClient.objects.filter(
        organization__slug=organization_slug, prefix=prefix[:12], revoked_at__isnull=True
    ):
        ScimClient.objects.filter(pk=client.pk).update(revoked_at=timezone.now())
        record(action="scim.client_revoked", actor=None, actor_type=ActorType.SYSTEM,
               organization=client.organization_id, object_type="scim_client", object_id=client.pk,
               details={"scim_client": client.pk})
        revoked += 1
    return revoked


def authenticate_scim_token(token: str) -> ScimClient | None:
    """Return the unrevoked client holding `token`, or None."""
    if not token.startswith(SCIM_TOKEN_PREFIX) or len(token) > 100:
        return None
    client = (
        ScimClient.objects.select_related("organization")
        .filter(token_hash=hash_token(token), revoked_at__isnull=True)
        .first()
    )
    if client is not None:
        now = timezone.now()
        # Touch at most once a minute, so a busy identity provider does not write on every request.
        if client.last_used_at is None or now - client.last_used_at > timedelta(minutes=1):
            ScimClient.objects.filter(pk=client.pk).update(last_used_at=now)
    return client


def scim_error(status: int, detail: str, *, scim_type: str | None = None) -> HttpResponse:
    """A SCIM error response (RFC 7644 section 3.12)."""
    body: dict = {"schemas": [_ERROR_SCHEMA], "status": str(status), "detail": detail}
    if scim_type:
        body["scimType"] = scim_type
    return HttpResponse(json.dumps(body), status=status, content_type=SCIM_CONTENT_TYPE)


def _bearer_token(request) -> str | None:
    scheme, _, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _is_json_object_or_empty(body: bytes) -> bool:
    if not body.strip():
        return True
    try:
        return isinstance(json.loads(body.decode("utf-8")), dict)
    except (UnicodeDecodeError, ValueError):
        return False


class ScimBearerAuth:
    """Wraps every django-scim2 view: authenticate the client, bind the request to its organisation.

    Sets `request.scim_client` and `request.scim_organization`; every adapter, filter and scope
    function reads the organisation from there and nowhere else.
    """

    def __init__(self, get_response=None):
        self.get_response = get_response

    def __call__(self, request, *args, **kwargs):
        token = _bearer_token(request)
        client = authenticate_scim_token(token) if token else None
        if client is None:
            # SECURITY: the token itself is never recorded, only why it was refused.
            reason = "missing" if token is None else "invalid_or_revoked"
            record(action="scim.auth_failed", actor=None, request=request, object_type="scim_client",
                   outcome=Outcome.FAILURE, details={"reason": reason})
            response = scim_error(401, "A valid SCIM bearer token is required.")
            response["WWW-Authenticate"] = 'Bearer realm="Lightbox SCIM"'
            return response
        length = request.META.get("CONTENT_LENGTH") or "0"
        if not length.isdigit() or int(length) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
            return scim_error(413, "The request body is too large.")
        if request.method in ("POST", "PUT", "PATCH") and not _is_json_object_or_empty(request.body):
            # django-scim2 reads a body as a dict; a list, a number or invalid UTF-8 is refused here.
            return scim_error(400, "The body must be a JSON object.", scim_type="invalidSyntax")
        request.scim_client = client
        request.scim_organization = client.organization
        return self.get_response(request, *args, **kwargs)
