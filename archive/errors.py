"""Exceptions of the archive app."""


class InvalidUpload(Exception):
    """Input that is not an acceptable DICOM object; the message is safe to show (no PHI)."""

    def __init__(self, message: str, *, code: str = "invalid", failure_reason: int = 0xC000):
        super().__init__(message)
        self.code = code
        # PS3.18 Table I.2-1 / PS3.4 Annex GG FailureReason codes, used in STOW-RS responses.
        self.failure_reason = failure_reason
