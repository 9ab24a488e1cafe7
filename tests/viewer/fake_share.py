"""A stand-in share principal for viewer tests (sharing/ tests its own principal)."""

from __future__ import annotations


class FakeSharePrincipal:
    """A share of one study: no PHI, a watermark, the top 8 rows redacted, nothing else reachable."""

    kind = "share"
    audit_actor = None

    def __init__(self, *, share_id: int, **study_lookup):
        from archive.models import Instance, Study

        self.audit_details = {"share_id": share_id}
        self.group_names = [f"share.{share_id}"]
        self._studies = Study.objects.filter(**study_lookup)
        self._instances = Instance.objects.filter(series__study__in=self._studies)

    def studies(self):
        return self._studies

    def instances(self):
        return self._instances

    def may_see_phi(self, study):
        return False

    def watermark_text(self):
        return "SHARED WITH DR X"

    def redactions_for(self, instance):
        return ((0, 0, instance.columns, 8),)

    def can_download(self):
        return False

    def can_list_studies(self):
        return False

    def is_current(self):
        return None
