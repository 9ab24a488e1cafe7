from django.contrib.auth import views as auth_views

from accounts.forms import SignInForm


class SignInView(auth_views.LoginView):
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
