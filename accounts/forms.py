from django import forms
from django.contrib.auth.forms import AuthenticationForm


class SignInForm(AuthenticationForm):
    username = forms.EmailField(
        label="E-mail",
        max_length=254,
        widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "username"}),
    )


class VerifyCodeForm(forms.Form):
    """One field for either a 6-digit authenticator code or a 10-character backup code."""

    code = forms.CharField(
        label="Code",
        max_length=32,
        widget=forms.TextInput(
            attrs={"autofocus": True, "autocomplete": "one-time-code", "inputmode": "text", "spellcheck": "false"}
        ),
        error_messages={"required": "Enter the code from your authenticator app, or a backup code."},
    )

    def clean_code(self) -> str:
        code = "".join(ch for ch in self.cleaned_data["code"] if not ch.isspace())
        if not code:
            raise forms.ValidationError("Enter the code from your authenticator app, or a backup code.")
        return code

    @property
    def is_totp(self) -> bool:
        code = self.cleaned_data.get("code", "")
        return code.isdigit() and len(code) in (6, 8)


class EnrolTotpForm(forms.Form):
    code = forms.CharField(
        label="Code shown by the app",
        max_length=8,
        widget=forms.TextInput(
            attrs={"autofocus": True, "autocomplete": "one-time-code", "inputmode": "numeric", "pattern": "[0-9 ]*"}
        ),
        error_messages={"required": "Enter the 6-digit code your authenticator app shows."},
    )
    name = forms.CharField(
        label="Name for this authenticator",
        max_length=64,
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "Authenticator app", "autocomplete": "off"}),
    )

    def clean_code(self) -> str:
        code = "".join(ch for ch in self.cleaned_data["code"] if not ch.isspace())
        if not (code.isdigit() and len(code) == 6):
            raise forms.ValidationError("The code is the 6 digits your authenticator app shows.")
        return code

    def clean_name(self) -> str:
        return self.cleaned_data["name"].strip() or "Authenticator app"


class RemoveDeviceForm(forms.Form):
    device = forms.CharField(max_length=128)
