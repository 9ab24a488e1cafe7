"""SCIM 2.0 provisioning (RFC 7643/7644) on top of django-scim2, bound to one organisation per client.

- `auth`: bearer tokens of `ScimClient`s (issued once, stored as SHA-256) and the request wrapper
  that binds each SCIM request to the client's organisation.
- `scope`: which users and groups one organisation's identity provider may see and change.
- `filters`, `adapters`, `config`: the django-scim2 hooks (SCIM_SERVICE_PROVIDER in settings).
- `roles`: which role a group grants (its displayName, LIGHTBOX_SCIM_GROUP_ROLES).
- `services`: the write side (create, update, deactivate users; group -> role memberships).
- `urls`: django-scim2's routes with its discovery endpoints made RFC-conformant.
"""
