from django.contrib import admin
from django.urls import include, path

from config.health import healthz
from viewer import urls as viewer_urls
from viewer import views as viewer_views

admin.site.site_header = "Lightbox administration"
admin.site.site_title = "Lightbox"

urlpatterns = [
    path("", viewer_views.home, name="home"),
    path("healthz", healthz, name="healthz"),
    path("accounts/", include("accounts.urls")),
    path("admin/", admin.site.urls),
    # Rendered resources first: they are more specific than archive's retrieve routes.
    path("dicomweb/", include((viewer_urls.dicomweb_patterns, "rendered"))),
    path("dicomweb/", include("archive.dicomweb.urls")),
]
