from django.urls import path

from accounts import oidc_views

app_name = "oidc"

urlpatterns = [
    path("authenticate/", oidc_views.sign_in_with_provider, name="authenticate"),
    path("callback/", oidc_views.provider_callback, name="callback"),
]
