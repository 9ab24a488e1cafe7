"""`{% sso_login as sso %}`: whether OpenID Connect sign-in is on, and the provider's label."""

from django import template
from django.conf import settings

from accounts.oidc import sso_enabled

register = template.Library()


@register.simple_tag
def sso_login() -> dict:
    return {"enabled": sso_enabled(), "label": settings.LIGHTBOX_OIDC_LABEL}
