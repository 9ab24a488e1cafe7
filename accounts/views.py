from django.contrib.auth import views as auth_views

from accounts.forms import SignInForm
from accounts.middleware import allow_before_second_factor


class SignInView(auth_views.LoginView):
    """Password sign-in; the second-factor middleware then sends the user to verify or enrol."""

    template_name = "accounts/sign_in.html"
    authentication_form = SignInForm
    redirect_authenticated_user = True


class SignOutView(auth_views.LogoutView):
    """Sign out (POST only) and tell the browser to drop everything it kept for this site."""

    def post(self, request, *args, **kwargs):
        response = super().post(request, *args, **kwargs)
        # PRIVACY: zero footprint on shared workstations.
        response.headers["Clear-Site-Data"] = '"cache", "cookies", "storage"'
        return response


# Reachable before the second factor: signing in starts it, signing out abandons it.
sign_in = allow_before_second_factor(SignInView.as_view())
sign_out = allow_before_second_factor(SignOutView.as_view())
