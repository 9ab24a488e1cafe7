"""Exceptions of the sharing app. Messages are safe to show: no PHI, no secrets."""


class ShareRefused(Exception):
    """Creating or changing a share is not allowed (policy, expiry, download right, step-up)."""

    def __init__(self, message: str, *, field: str | None = None, step_up: bool = False):
        super().__init__(message)
        self.message = message
        self.field = field
        self.step_up = step_up
