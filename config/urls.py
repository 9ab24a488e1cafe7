from django.contrib import admin
from django.urls import include, path

from config.health import healthz
from sharing import urls as sharing_urls
from viewer import urls as viewer_urls
from viewer import views as viewer_views

admin.site.site_header = "Lightbox administration"
admin.site.site_title = "Lightbox"

urlpatterns = [
    path("", viewer_views.home, name="home"),
    path("viewer/", include("viewer.urls")),
    path("healthz", healthz, name="healthz"),
    path("accounts/", include("accounts.urls")),
    # OpenID Connect single sign-on (accounts/oidc_views.py); 404 unless LIGHTBOX_OIDC_ISSUER is set.
    path("oidc/", include("accounts.oidc_urls")),
    # Passkey (WebAuthn) ceremonies: django-otp-webauthn views with Lightbox rules (accounts/passkeys.py).
    path("webauthn/", include(("accounts.passkeys", "otp_webauthn"))),
    path("admin/", admin.site.urls),
    # Share links (issue #7): the token link, then the recipient's token-free pages.
    path("s/", include((sharing_urls.link_patterns, "sharing-link"))),
    path("share/", include("sharing.urls")),
    # Rendered resources first: they are more specific than archive's retrieve routes.
    path("dicomweb/", include((viewer_urls.dicomweb_patterns, "rendered"))),
    path("dicomweb/", include("archive.dicomweb.urls")),
    # SCIM 2.0 provisioning; bearer-token authenticated per organisation (accounts/scim/auth.py).
    path("scim/v2/", include("accounts.scim.urls")),
]
