"""The admin site: django-otp's OTPAdminSite, gated on our own second-factor session flag.

`accounts.mfa.is_verified` counts every second factor Lightbox accepts (TOTP, passkeys, backup
codes, and an OpenID provider that asserted MFA), where django-otp's own check knows only its
devices. Signing in happens on Lightbox's pages, never on an admin login form.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib.admin import AdminSite
from django.http import HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django_otp.admin import OTPAdminSite

from accounts.mfa import is_verified


class LightboxAdminSite(OTPAdminSite):
    site_header = "Lightbox administration"
    site_title = "Lightbox"
    index_title = "Administration"

    def __init__(self, name: str = "admin"):
        # OTPAdminSite defaults to the name "otpadmin"; keep the "admin:" URL namespace.
        super().__init__(name)

    def has_permission(self, request) -> bool:
        # SECURITY: staff status alone is not enough; the session must have passed a second factor.
        return AdminSite.has_permission(self, request) and is_verified(request)

    def login(self, request, extra_context=None):
        """Send people to Lightbox's sign-in (password, then second factor) instead of a form here."""
        target = request.GET.get("next") or reverse("admin:index", current_app=self.name)
        if request.user.is_authenticated:
            if not is_verified(request):
                return HttpResponseRedirect(f"{reverse('accounts:verify')}?{urlencode({'next': target})}")
            # Signed in and verified but not staff: say so instead of looping through sign-in.
            return render(request, "accounts/admin_forbidden.html", status=403)
        return HttpResponseRedirect(f"{reverse('accounts:login')}?{urlencode({'next': target})}")
