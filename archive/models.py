"""The study index: Patient / Study / Series / Instance, and the organisations' data keys.

Pixel data and full headers live only in the encrypted blob store; the database holds what is
needed to find, sort and authorise (and the DICOM JSON of each header for QIDO/metadata).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from accounts.models import Organization


class Classification(models.TextChoices):
    NORMAL = "normal", "Normal"
    RESTRICTED = "restricted", "Restricted (needs an explicit grant)"


class DataKey(models.Model):
    """A per-organisation data-encryption key, stored only wrapped by a KEK."""

    class State(models.TextChoices):
        ACTIVE = "active"  # new blobs are written with it
        RETIRING = "retiring"  # blobs still use it; a DEK rotation is moving them off
        RETIRED = "retired"  # no blob uses it any more

    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="data_keys")
    key_id = models.CharField(max_length=64, unique=True)
    kek_id = models.CharField(max_length=128)
    wrapped = models.BinaryField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization"], condition=Q(state="active"), name="one_active_dek_per_org"
            )
        ]

    def __str__(self) -> str:
        return f"{self.key_id} ({self.state})"


class Patient(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="patients")
    patient_id = models.CharField(max_length=64)
    issuer_of_patient_id = models.CharField(max_length=64, blank=True)
    patient_name = models.CharField(max_length=324, blank=True)
    patient_birth_date = models.CharField(max_length=8, blank=True)
    patient_sex = models.CharField(max_length=16, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "patient_id", "issuer_of_patient_id"], name="unique_patient_per_org"
            )
        ]

    def __str__(self) -> str:
        # PRIVACY: the id, not the name, so admin logs and error pages carry less PHI.
        return f"Patient {self.pk}"


class StudyQuerySet(models.QuerySet):
    def visible_to(self, user):
        """Studies `user` may view, through the policy seam."""
        from archive.access import study_filter

        return self.filter(study_filter(user))


class Study(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="studies")
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="studies")
    study_instance_uid = models.CharField(max_length=64)
    study_date = models.CharField(max_length=8, blank=True, db_index=True)
    study_time = models.CharField(max_length=16, blank=True)
    accession_number = models.CharField(max_length=16, blank=True)
    study_id = models.CharField(max_length=16, blank=True)
    study_description = models.CharField(max_length=64, blank=True)
    referring_physician_name = models.CharField(max_length=324, blank=True)
    modalities_in_study = models.CharField(max_length=128, blank=True)
    number_of_series = models.PositiveIntegerField(default=0)
    number_of_instances = models.PositiveIntegerField(default=0)
    classification = models.CharField(max_length=16, choices=Classification.choices, default=Classification.NORMAL)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = StudyQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "studies"
        constraints = [
            models.UniqueConstraint(fields=["organization", "study_instance_uid"], name="unique_study_per_org")
        ]

    def __str__(self) -> str:
        return self.study_instance_uid


class Series(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+")
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="series")
    series_instance_uid = models.CharField(max_length=64)
    modality = models.CharField(max_length=16, blank=True)
    series_number = models.IntegerField(null=True, blank=True)
    series_description = models.CharField(max_length=64, blank=True)
    body_part_examined = models.CharField(max_length=16, blank=True)
    number_of_instances = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name_plural = "series"
        constraints = [
            models.UniqueConstraint(fields=["organization", "series_instance_uid"], name="unique_series_per_org")
        ]

    def __str__(self) -> str:
        return self.series_instance_uid


class Instance(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+")
    series = models.ForeignKey(Series, on_delete=models.CASCADE, related_name="instances")
    sop_class_uid = models.CharField(max_length=64)
    sop_instance_uid = models.CharField(max_length=64)
    transfer_syntax_uid = models.CharField(max_length=64)
    instance_number = models.IntegerField(null=True, blank=True)
    rows = models.PositiveIntegerField(null=True, blank=True)
    columns = models.PositiveIntegerField(null=True, blank=True)
    number_of_frames = models.PositiveIntegerField(default=1)
    bits_allocated = models.PositiveSmallIntegerField(null=True, blank=True)
    bits_stored = models.PositiveSmallIntegerField(null=True, blank=True)
    samples_per_pixel = models.PositiveSmallIntegerField(null=True, blank=True)
    photometric_interpretation = models.CharField(max_length=32, blank=True)
    image_position_patient = models.JSONField(null=True, blank=True)
    image_orientation_patient = models.JSONField(null=True, blank=True)
    slice_location = models.FloatField(null=True, blank=True)
    # Where the bytes are: an encrypted blob under this organisation's data key.
    blob_id = models.CharField(max_length=32, unique=True)
    data_key = models.ForeignKey(DataKey, on_delete=models.PROTECT, related_name="instances")
    size = models.PositiveBigIntegerField()
    sha256_received = models.CharField(max_length=64)
    sha256_stored = models.CharField(max_length=64)
    source = models.CharField(max_length=16)
    created_at = models.DateTimeField(auto_now_add=True)
    conformance_notes = models.JSONField(default=list, blank=True)
    # The header as DICOM JSON (PS3.18 F.2), bulk data replaced by BulkDataURI markers.
    metadata = models.JSONField(default=dict)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "sop_instance_uid"], name="unique_instance_per_org")
        ]
        indexes = [models.Index(fields=["series", "instance_number"])]

    def __str__(self) -> str:
        return self.sop_instance_uid


class DerivedCopy(models.Model):
    """A lossless fast-decode copy of an instance (JPEG 2000 -> RLE) that rendering reads instead.

    Never replaces the original: DICOMweb retrieval, downloads and verification of the original
    use `Instance.blob_id` only. Encrypted like every blob; a regenerable cache, so a DEK
    rotation drops copies under the old key and the background job derives them again.
    """

    instance = models.OneToOneField(Instance, on_delete=models.CASCADE, related_name="derived_copy")
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+")
    # Empty when deriving failed; `error` then says why and the instance is not tried again.
    blob_id = models.CharField(max_length=32, blank=True, db_index=True)
    data_key = models.ForeignKey(DataKey, on_delete=models.PROTECT, null=True, blank=True, related_name="derived_copies")
    transfer_syntax_uid = models.CharField(max_length=64, blank=True)
    size = models.PositiveBigIntegerField(default=0)
    sha256_stored = models.CharField(max_length=64, blank=True)
    error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "derived copies"

    def __str__(self) -> str:
        return f"Fast copy of instance {self.instance_id}"


class StudyGrantQuerySet(models.QuerySet):
    def current(self):
        from django.utils import timezone

        return self.filter(revoked_at__isnull=True).filter(
            Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now())
        )


class StudyGrant(models.Model):
    """An explicit permission for one user to open one `restricted` study."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="grants")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="study_grants")
    granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    reason = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = StudyGrantQuerySet.as_manager()

    def __str__(self) -> str:
        return f"Grant on study {self.study_id} to {self.user}"


class PatientLink(models.Model):
    """Ties a patient's Lightbox account to their Patient record: they see only these studies."""

    class Method(models.TextChoices):
        STAFF = "staff", "Linked by staff"
        SELF_SERVICE = "self_service", "Proved MRN, date of birth and e-mail code"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="patient_links")
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="account_links")
    method = models.CharField(max_length=20, choices=Method.choices)
    linked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "patient"], name="unique_patient_link")]

    def __str__(self) -> str:
        return f"{self.user} is patient {self.patient_id}"
