from django.contrib import admin
from django.urls import include, path

from config.health import healthz
from viewer import views as viewer_views

admin.site.site_header = "Lightbox administration"
admin.site.site_title = "Lightbox"

urlpatterns = [
    path("", viewer_views.home, name="home"),
    path("healthz", healthz, name="healthz"),
    path("accounts/", include("accounts.urls")),
    path("admin/", admin.site.urls),
]
