"""Forms: creating a share (admin, viewer, patients) and a recipient's verification answer."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.conf import settings
from django.utils import timezone

from archive.models import Series, Study
from sharing.models import Share


class ShareCreateForm(forms.Form):
    study = forms.ModelChoiceField(queryset=Study.objects.none(), help_text="Study Instance UID.")
    series = forms.ModelMultipleChoiceField(
        queryset=Series.objects.none(), required=False, help_text="Leave empty to share every series."
    )
    recipient_name = forms.CharField(max_length=200, required=False)
    recipient_email = forms.EmailField(required=False)
    recipient_phone = forms.RegexField(regex=r"^\+?[0-9 ()\-]{5,31}$", max_length=32, required=False)
    recipient_kind = forms.ChoiceField(choices=Share.RecipientKind.choices, initial=Share.RecipientKind.CLINICIAN)
    verification = forms.ChoiceField(choices=Share.Verification.choices, initial=Share.Verification.ACCESS_CODE)
    expires_in_days = forms.IntegerField(min_value=1, max_value=3650)
    max_opens = forms.IntegerField(min_value=1, max_value=10000, required=False, help_text="Blank: no limit.")
    download = forms.ChoiceField(choices=Share.Download.choices, initial=Share.Download.NONE)
    phi_display = forms.ChoiceField(choices=Share.PHIDisplay.choices, initial=Share.PHIDisplay.REDACTED)
    message = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=2000, required=False)
    notify_creator_on_open = forms.BooleanField(required=False, initial=True)
    send_email = forms.BooleanField(required=False, initial=True, label="E-mail the link to the recipient")

    def __init__(self, *args, studies=None, study=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["expires_in_days"].initial = settings.LIGHTBOX_SHARE_DEFAULT_DAYS
        self.fixed_study = study
        if study is not None:
            del self.fields["study"]  # the page is for one study; it comes from the URL, not the form
            self.fields["series"].queryset = Series.objects.filter(study=study).order_by("series_number", "pk")
            self.fields["series"].widget = forms.CheckboxSelectMultiple()
            self.fields["series"].label_from_instance = lambda s: (
                f"{s.modality or '?'} series {s.series_number if s.series_number is not None else ''} "
                f"({s.number_of_instances} images)"
            )
        else:
            self.fields["study"].queryset = studies if studies is not None else Study.objects.none()
            self.fields["series"].queryset = Series.objects.filter(study__in=self.fields["study"].queryset)

    def clean(self):
        data = super().clean()
        if not data.get("recipient_name") and not data.get("recipient_email"):
            raise forms.ValidationError("Give the recipient's name or e-mail address (it is shown in the watermark).")
        return data

    def service_kwargs(self) -> dict:
        data = self.cleaned_data
        return {
            "study": self.fixed_study or data["study"],
            "series": list(data.get("series") or []),
            "recipient_name": data.get("recipient_name", ""),
            "recipient_email": data.get("recipient_email", ""),
            "recipient_phone": data.get("recipient_phone", ""),
            "recipient_kind": data["recipient_kind"],
            "verification": data["verification"],
            "expires_at": timezone.now() + timedelta(days=data["expires_in_days"]),
            "max_opens": data.get("max_opens"),
            "download": data["download"],
            "phi_display": data["phi_display"],
            "message": data.get("message", ""),
            "notify_creator_on_open": bool(data.get("notify_creator_on_open")),
            "send_email": bool(data.get("send_email")),
        }


class CodeForm(forms.Form):
    code = forms.CharField(max_length=32, strip=True, label="Code")


class BirthDateForm(forms.Form):
    birth_date = forms.DateField(
        label="Patient's date of birth", widget=forms.DateInput(attrs={"type": "date"}), input_formats=["%Y-%m-%d"]
    )
