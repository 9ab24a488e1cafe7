"""The study index: Patient / Study / Series / Instance, and the organisations' data keys.

Pixel data and full headers live only in the encrypted blob store; the database holds what is
needed to find, sort and authorise (and the DICOM JSON of each header for QIDO/metadata).
"""

from __future__ import annotations

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
        from accounts.policy import Action, organizations_where

        return self.filter(organization_id__in=organizations_where(user, Action.STUDY_VIEW))


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
