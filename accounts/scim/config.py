"""django-scim2 hooks named in SCIM_SERVICE_PROVIDER: base location, scoping, provider config."""

from __future__ import annotations

from django.urls import reverse
from django_scim import exceptions
from django_scim.models import SCIMServiceProviderConfig

from accounts.models import ScimGroup
from accounts.scim import scope
from audit.models import ActorType, Outcome
from audit.services import record


def base_location(request=None, *args, **kwargs) -> str:
    """Resource locations use the host the client called (already checked against ALLOWED_HOSTS)."""
    return request.build_absolute_uri("/") if request is not None else ""


def _scope_for(model, request):
    org = request.scim_organization
    return scope.groups_in_scope(org) if model is ScimGroup else scope.users_in_scope(org)


def object_scope_getter(model):
    def in_scope(request, obj, *args, **kwargs):
        # SECURITY: another organisation's user or group answers exactly like an unknown id.
        if not _scope_for(model, request).filter(pk=obj.pk).exists():
            record(action="scim.access_denied", actor=None, actor_type=ActorType.SYSTEM, request=request,
                   organization=request.scim_organization, object_type="scim_group" if model is ScimGroup else "user",
                   object_id=obj.pk, outcome=Outcome.DENIED, details={"scim_client": request.scim_client.pk})
            raise exceptions.NotFoundError(kwargs.get("uuid") or "")
        return obj

    return in_scope


def queryset_scope_getter(model):
    def in_scope(request, qs, *args, **kwargs):
        # Stable order for startIndex/count paging; not-yet-adopted users have no scim_id to sort by.
        org = request.scim_organization
        if model is ScimGroup:
            return scope.groups_in_scope(org).prefetch_related("members").order_by("pk")
        return scope.users_for_listing(org)

    return in_scope


class ServiceProviderConfig(SCIMServiceProviderConfig):
    """What this service provider implements (RFC 7643 section 5)."""

    @property
    def location(self):
        return base_location(self.request).rstrip("/") + reverse("scim:service-provider-config")

    def to_dict(self):
        document = super().to_dict()
        document.update({
            "documentationUri": None,
            "filter": {"supported": True, "maxResults": 50},
            # Passwords are never set over SCIM: provisioned users sign in through single sign-on.
            "changePassword": {"supported": False},
        })
        return document
