"""The admin app with Lightbox's OTP admin site as `admin.site`.

Its own module (not accounts/apps.py): `default_site` is a dotted path resolved after the app
registry is ready, and keeping AdminConfig out of accounts/apps.py leaves AccountsConfig the only
AppConfig Django finds there for "accounts".
"""

from django.contrib.admin.apps import AdminConfig


class LightboxAdminConfig(AdminConfig):
    default_site = "accounts.admin_site.LightboxAdminSite"
