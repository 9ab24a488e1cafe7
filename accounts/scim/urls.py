"""django-scim2's URL patterns (namespace "scim") with its discovery endpoints made RFC-conformant.

django-scim2 0.23 leaves `totalResults` out of the `/ResourceTypes` and `/Schemas` lists (RFC 7644
section 3.4.2 requires it), serves schema documents without their `schemas` attribute (RFC 7643
section 7), and answers unknown ids and paths with an empty or HTML 404. Strict clients
(scim2-client's `discover()`, scim2-tester) refuse all three; these subclasses fix them.
"""

from __future__ import annotations

import json

from django.urls import re_path
from django_scim import constants, exceptions, views
from django_scim.urls import urlpatterns as _library_patterns

from accounts.scim.auth import scim_error

app_name = "scim"

_SCHEMA_URI = "urn:ietf:params:scim:schemas:core:2.0:Schema"


class _DiscoveryFixes:
    def get(self, request, *args, **kwargs):
        response = super().get(request, *args, **kwargs)
        if response.status_code == 404:
            return scim_error(404, "No such resource type or schema.")
        document = json.loads(response.content)
        if document.get("schemas") == [constants.SchemaURI.LIST_RESPONSE]:
            count = len(document.get("Resources", []))
            document.update(totalResults=count, itemsPerPage=count, startIndex=1)
            response.content = json.dumps(document)
        return response


class ResourceTypesView(_DiscoveryFixes, views.ResourceTypesView):
    pass


class SchemasView(_DiscoveryFixes, views.SchemasView):
    schemas_by_uri = {
        uri: {"schemas": [_SCHEMA_URI], **schema, "meta": {**schema.get("meta", {}), "resourceType": "Schema"}}
        for uri, schema in views.SchemasView.schemas_by_uri.items()
    }


class UnknownPathView(views.SCIMView):
    """Any other path under the SCIM root: a SCIM 404 (after authentication, like every SCIM view)."""

    def _not_found(self, request, *args, **kwargs):
        raise exceptions.SCIMException("No such SCIM endpoint.", status=404)

    get = post = put = patch = delete = _not_found


_REPLACED = {
    "resource-types": re_path(r"^ResourceTypes(?:/(?P<uuid>[^/]+))?$", ResourceTypesView.as_view(),
                              name="resource-types"),
    "schemas": re_path(r"^Schemas(?:/(?P<uuid>[^/]+))?$", SchemasView.as_view(), name="schemas"),
}

urlpatterns = [_REPLACED.get(pattern.name, pattern) for pattern in _library_patterns] + [
    re_path(r"^.+$", UnknownPathView.as_view(), name="unknown"),
]
