"""django-scim2 adapters: SCIM User/Group documents <-> `User` / `ScimGroup`, inside one organisation.

Parsing lives here and writing in `accounts.scim.services`. Lightbox stores a user's e-mail
(`userName`, which must be an e-mail address: it is the sign-in name), one full name, `active`
and `externalId`; other attributes identity providers send (phone numbers, enterprise extension,
`emails`, passwords) are accepted and ignored. PATCH follows RFC 7644 section 3.5.2, including the
forms Azure AD and Okta send ("Replace" in capitals, "False" as a string, path-less values).
"""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator
from django_scim import constants, exceptions
from django_scim.adapters import SCIMGroup, SCIMUser

from accounts.models import User
from accounts.scim import scope, services
from accounts.scim.roles import role_for_group
from accounts.scim.services import GroupChanges, UserChanges

_USER_URN = "urn:ietf:params:scim:schemas:core:2.0:user:"
_GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:group:"
_MEMBER_FILTER = re.compile(r'^members\[\s*value\s+eq\s+"([^"]+)"\s*\]$', re.IGNORECASE)


def _bad(detail: str, scim_type: str = "invalidValue") -> exceptions.BadRequestError:
    return exceptions.BadRequestError(detail, scim_type=scim_type)


def _text(value: Any, name: str, *, max_length: int, required: bool = False) -> str | None:
    if value is None or value == "":
        if required:
            raise _bad(f'"{name}" is required.')
        return None
    if not isinstance(value, str):
        raise _bad(f'"{name}" must be a string.')
    value = value.strip()
    if len(value) > max_length:
        raise _bad(f'"{name}" is longer than {max_length} characters.')
    return value


def _email(value: Any) -> str:
    email = _text(value, "userName", max_length=254, required=True)
    try:
        EmailValidator()(email)
    except ValidationError:
        raise _bad('"userName" must be an e-mail address (it is the sign-in name).') from None
    return email.lower()


def _boolean(value: Any, name: str) -> bool:
    # Azure AD sends "True"/"False" as strings in PATCH operations.
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _bad(f'"{name}" must be true or false.')


def _strip_urn(path: str, urn: str) -> str:
    path = path.strip()
    return path[len(urn):] if path.lower().startswith(urn) else path


def _join_name(given: str | None, family: str | None) -> str:
    return " ".join(part for part in (given, family) if part)


def _split_name(full_name: str) -> tuple[str, str]:
    given, _, family = full_name.partition(" ")
    return given, family


def _full_name(document: dict) -> str:
    name = document.get("name")
    if name is not None and not isinstance(name, dict):
        raise _bad('"name" must be an object.')
    name = name or {}
    formatted = _text(name.get("formatted"), "name.formatted", max_length=200)
    given = _text(name.get("givenName"), "name.givenName", max_length=200)
    family = _text(name.get("familyName"), "name.familyName", max_length=200)
    full = formatted or _join_name(given, family) or _text(document.get("displayName"), "displayName", max_length=200)
    if full and len(full) > 200:
        raise _bad('"name" is longer than 200 characters.')
    return full or ""


def _linked_id(user: User, request) -> str:
    """The user's SCIM id; users who existed before provisioning get theirs when first seen."""
    if scope.adopt(user, request.scim_organization):
        services.audit_link(client=request.scim_client, request=request, user=user)
    return user.scim_id


class ScimUserAdapter(SCIMUser):
    """A `User` as a SCIM User resource."""

    def __init__(self, obj, request=None):
        super().__init__(obj, request)
        self._changes = UserChanges()

    @property
    def _client(self):
        return self.request.scim_client

    @classmethod
    def resource_type_dict(cls, request=None):
        # RFC 7643 section 6: the endpoint is relative to the base URL ("/Users"), not a full path.
        return {**super().resource_type_dict(request), "endpoint": "/Users"}

    @property
    def id(self):
        return _linked_id(self.obj, self.request)

    @property
    def display_name(self):
        return self.obj.full_name or self.obj.email

    @property
    def groups(self):
        groups = getattr(self.obj, "scim_groups_here", None)  # prefetched by list and filter queries
        if groups is None:
            groups = self.obj.scim_groups.filter(organization=self.request.scim_organization).order_by("pk")
        adapters = [ScimGroupAdapter(g, self.request) for g in groups]
        return [{"value": g.id, "$ref": g.location, "display": g.display_name, "type": "direct"} for g in adapters]

    @property
    def meta(self):
        return {
            "resourceType": self.resource_type,
            # No lastModified: Lightbox keeps no modification time for users (meta is informational).
            "created": self.obj.date_joined.isoformat(),
            "location": self.location,
        }

    def to_dict(self):
        given, family = _split_name(self.obj.full_name)
        return {
            "schemas": [constants.SchemaURI.USER],
            "id": self.id,
            "externalId": self.obj.scim_external_id,
            "userName": self.obj.email,
            "name": {"formatted": self.obj.full_name, "givenName": given, "familyName": family},
            "displayName": self.display_name,
            "emails": [{"value": self.obj.email, "primary": True, "type": "work"}],
            "active": self.obj.is_active,
            "groups": self.groups,
            "meta": self.meta,
        }

    # --- POST and PUT: a whole document -------------------------------------------------------
    def validate_dict(self, d):
        if not isinstance(d, dict):
            raise _bad("The body must be a SCIM User object.", "invalidSyntax")

    def from_dict(self, d):
        self._changes = UserChanges(
            email=_email(d.get("userName")),
            full_name=_full_name(d),
            external_id=_text(d.get("externalId"), "externalId", max_length=254),
        )
        if d.get("active") is not None:
            self._changes.active = _boolean(d["active"], "active")

    def save(self):
        if self.obj.pk is None:
            self.obj = services.create_user(client=self._client, request=self.request, changes=self._changes)
        else:
            self.obj = services.update_user(
                client=self._client, request=self.request, user=self.obj, changes=self._changes
            )

    def delete(self):
        services.delete_user(client=self._client, request=self.request, user=self.obj)

    # --- PATCH --------------------------------------------------------------------------------
    def handle_operations(self, operations):
        if not isinstance(operations, list):
            raise _bad('"Operations" must be a list.', "invalidSyntax")
        changes = UserChanges()
        name = {"formatted": None, "given": None, "family": None}
        for operation in operations:
            op, path, value = _operation(operation)
            if path is None:
                if op == "remove" or not isinstance(value, dict):
                    raise _bad("An operation without a path needs an object value.", "noTarget")
                for key, item in value.items():
                    self._apply(changes, name, op, _strip_urn(key, _USER_URN), item)
            else:
                self._apply(changes, name, op, _strip_urn(path, _USER_URN), value)
        if any(part is not None for part in name.values()):
            given, family = _split_name(self.obj.full_name)
            given = given if name["given"] is None else name["given"]
            family = family if name["family"] is None else name["family"]
            full = name["formatted"] if name["formatted"] is not None else _join_name(given, family)
            if len(full) > 200:
                raise _bad('"name" is longer than 200 characters.')
            changes.full_name = full
        self.obj = services.update_user(client=self._client, request=self.request, user=self.obj, changes=changes)

    def _apply(self, changes: UserChanges, name: dict, op: str, path: str, value: Any) -> None:
        key = path.lower()
        removing = op == "remove"
        if key == "active":
            if removing:
                raise _bad('"active" cannot be removed.', "mutability")
            changes.active = _boolean(value, "active")
        elif key == "username":
            if removing:
                raise _bad('"userName" cannot be removed.', "mutability")
            changes.email = _email(value)
        elif key == "externalid":
            changes.external_id = None if removing else _text(value, "externalId", max_length=254)
        elif key == "name":
            if removing:
                name.update(formatted="", given="", family="")
            elif isinstance(value, dict):
                for sub, item in value.items():
                    self._apply(changes, name, op, f"name.{sub}", item)
            else:
                raise _bad('"name" must be an object.')
        elif key in ("name.formatted", "displayname"):
            name["formatted"] = "" if removing else (_text(value, path, max_length=200) or "")
        elif key == "name.givenname":
            name["given"] = "" if removing else (_text(value, path, max_length=200) or "")
        elif key == "name.familyname":
            name["family"] = "" if removing else (_text(value, path, max_length=200) or "")
        # Anything else (emails, phoneNumbers, the enterprise extension, ...) is not stored here.


def _operation(operation: Any) -> tuple[str, str | None, Any]:
    if not isinstance(operation, dict):
        raise _bad("Each operation must be an object.", "invalidSyntax")
    op = str(operation.get("op", "")).lower()
    if op not in constants.VALID_PATCH_OPS:
        raise _bad('"op" must be add, remove or replace.', "invalidSyntax")
    path = operation.get("path")
    if path is not None and (not isinstance(path, str) or not path.strip()):
        raise _bad('"path" must be a non-empty string.', "invalidPath")
    if op == "remove" and path is None:
        raise _bad('A "remove" operation needs a "path".', "noTarget")
    return op, path, operation.get("value")


class ScimGroupAdapter(SCIMGroup):
    """A `ScimGroup` (members hold the group's role in the organisation) as a SCIM Group resource."""

    def __init__(self, obj, request=None):
        super().__init__(obj, request)
        self._changes = GroupChanges()

    @property
    def _client(self):
        return self.request.scim_client

    @classmethod
    def resource_type_dict(cls, request=None):
        return {**super().resource_type_dict(request), "endpoint": "/Groups"}

    @property
    def display_name(self):
        return self.obj.display_name

    @property
    def members(self):
        users = sorted(self.obj.members.all(), key=lambda user: user.pk)  # prefetched in lists
        return [
            # RFC 7643 section 8.7.1: a member has value, $ref and type (no display).
            {"value": _linked_id(u, self.request), "$ref": ScimUserAdapter(u, self.request).location, "type": "User"}
            for u in users
        ]

    def to_dict(self):
        return {
            "schemas": [constants.SchemaURI.GROUP],
            "id": self.id,
            "externalId": self.obj.scim_external_id,
            "displayName": self.obj.display_name,
            "members": self.members,
            "meta": {
                "resourceType": self.resource_type,
                "created": self.obj.created_at.isoformat(),
                "location": self.location,
            },
        }

    def _display_name_and_role(self, value: Any) -> tuple[str, str]:
        display_name = _text(value, "displayName", max_length=200, required=True)
        role = role_for_group(display_name)
        if role is None:
            raise _bad(
                f'The group "{display_name}" maps to no Lightbox role. Name it after a role '
                "(clinician, patient, staff, auditor, admin) or map it in LIGHTBOX_SCIM_GROUP_ROLES."
            )
        return display_name, role

    def _users(self, members: Any) -> list[User]:
        """The users a list of `{"value": id}` names; every one must be in this organisation's scope."""
        if members is None:
            return []
        if isinstance(members, dict):
            members = [members]
        if not isinstance(members, list) or not all(isinstance(m, dict) for m in members):
            raise _bad('"members" must be a list of {"value": id} objects.')
        ids = {str(m.get("value", "")) for m in members}
        # SECURITY: only this organisation's users can be named; another's look like unknown ids.
        users = list(scope.users_in_scope(self.request.scim_organization).filter(scim_id__in=ids))
        if len(users) != len(ids):
            raise _bad("A member is not a user of this organisation.")
        return users

    # --- POST and PUT -------------------------------------------------------------------------
    def validate_dict(self, d):
        if not isinstance(d, dict):
            raise _bad("The body must be a SCIM Group object.", "invalidSyntax")

    def from_dict(self, d):
        display_name, role = self._display_name_and_role(d.get("displayName"))
        self._changes = GroupChanges(
            display_name=display_name,
            role=role,
            external_id=_text(d.get("externalId"), "externalId", max_length=254),
            members=self._users(d.get("members")),
        )

    def save(self):
        if self.obj.pk is None:
            self.obj = services.create_group(client=self._client, request=self.request, changes=self._changes)
        else:
            self.obj = services.update_group(
                client=self._client, request=self.request, group=self.obj, changes=self._changes
            )

    def delete(self):
        services.delete_group(client=self._client, request=self.request, group=self.obj)

    # --- PATCH --------------------------------------------------------------------------------
    def handle_operations(self, operations):
        if not isinstance(operations, list):
            raise _bad('"Operations" must be a list.', "invalidSyntax")
        changes = GroupChanges()
        for operation in operations:
            op, path, value = _operation(operation)
            if path is None:
                if not isinstance(value, dict):
                    raise _bad("An operation without a path needs an object value.", "noTarget")
                for key, item in value.items():
                    self._apply(changes, op, _strip_urn(key, _GROUP_URN), item)
            else:
                self._apply(changes, op, _strip_urn(path, _GROUP_URN), value)
        self.obj = services.update_group(client=self._client, request=self.request, group=self.obj, changes=changes)

    def _apply(self, changes: GroupChanges, op: str, path: str, value: Any) -> None:
        key = path.lower()
        one_member = _MEMBER_FILTER.match(path)
        if one_member and op == "remove":
            _remove(changes, self._users([{"value": one_member.group(1)}]))
        elif key == "members":
            if op == "add":
                _add(changes, self._users(value))
            elif op == "remove":
                if value is None:
                    changes.members = []
                    changes.add, changes.remove = [], []
                else:
                    _remove(changes, self._users(value))
            else:
                changes.members = self._users(value)
                changes.add, changes.remove = [], []
        elif key == "displayname":
            if op == "remove":
                raise _bad('"displayName" cannot be removed.', "mutability")
            changes.display_name, changes.role = self._display_name_and_role(value)
        elif key == "externalid":
            changes.external_id = None if op == "remove" else _text(value, "externalId", max_length=254)
        elif key == "id":
            pass  # Azure AD repeats the id in path-less replaces; it never changes.
        else:
            raise _bad(f'Lightbox cannot change "{path}" of a group.', "invalidPath")


# Operations apply in order: a later add undoes an earlier remove of the same user and vice versa.
def _add(changes: GroupChanges, users: list[User]) -> None:
    changes.remove = [u for u in changes.remove if u not in users]
    changes.add += users


def _remove(changes: GroupChanges, users: list[User]) -> None:
    changes.add = [u for u in changes.add if u not in users]
    changes.remove += users
