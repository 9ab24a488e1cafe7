"""SCIM filters (RFC 7644 section 3.4.2.2) as ORM queries, always inside the client's organisation.

django-scim2's default parsers build raw SQL over the whole table; these build a Q object with
scim2-filter-parser's Django transpiler and apply it to the organisation's scope only.
"""

from __future__ import annotations

from django.db.models import Q, QuerySet
from django_scim import exceptions
from scim2_filter_parser.transpilers.django_q_object import get_query

from accounts.scim import scope

_USER_URN = "urn:ietf:params:scim:schemas:core:2.0:user"
_GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:group"


def _parse(query: str, attr_map) -> Q:
    if len(query) > 1000:
        raise exceptions.BadRequestError("The filter is too long.", scim_type="invalidFilter")
    try:
        q = get_query(query, attr_map)
    except Exception:  # the lexer and parser raise several types for malformed input
        raise exceptions.BadRequestError("The filter could not be parsed.", scim_type="invalidFilter") from None
    if not isinstance(q, Q):
        raise exceptions.BadRequestError(
            "The filter names no attribute Lightbox can filter on.", scim_type="invalidFilter"
        )
    return q


def _with_urn(pairs: dict[tuple[str, str | None], str], urn: str) -> dict:
    attr_map = {}
    for (attr, sub), field_name in pairs.items():
        attr_map[(attr, sub, None)] = field_name
        attr_map[(attr, sub, urn)] = field_name
    return attr_map


class UserFilter:
    attr_map = _with_urn(
        {
            ("id", None): "scim_id",
            ("userName", None): "email",
            ("externalId", None): "scim_external_id",
            ("emails", "value"): "email",
            ("emails", None): "email",
            ("name", "formatted"): "full_name",
            ("displayName", None): "full_name",
            ("active", None): "is_active",
        },
        _USER_URN,
    )

    @classmethod
    def search(cls, query: str, request=None) -> QuerySet:
        return scope.users_for_listing(request.scim_organization).filter(_parse(query, cls.attr_map))


class GroupFilter:
    attr_map = _with_urn(
        {
            ("id", None): "scim_id",
            ("displayName", None): "display_name",
            ("externalId", None): "scim_external_id",
            ("members", "value"): "members__scim_id",
            ("members", None): "members__scim_id",
        },
        _GROUP_URN,
    )

    @classmethod
    def search(cls, query: str, request=None) -> QuerySet:
        groups = scope.groups_in_scope(request.scim_organization)
        return groups.filter(_parse(query, cls.attr_map)).distinct().prefetch_related("members").order_by("pk")
