"""Logging filters: request id on every line, and PHI and secrets kept out of every line."""

from __future__ import annotations

import logging
import re

from config.request_context import current_request_id

# PRIVACY: query strings carry DICOMweb search terms (patient names, ids, birth dates), so they
# never reach a log; share links carry their token in the path; API clients send bearer tokens.
_SCRUBBERS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\?[^\s\"']*"), "?[redacted]"),
    (re.compile(r"/s/[A-Za-z0-9_\-]{16,}"), "/s/[redacted]"),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=\-]+"), r"\1[redacted]"),
    (re.compile(r"(?i)(ticket=|token=)[^&\s\"']+"), r"\1[redacted]"),
    # pydicom reports a header value it finds invalid verbatim ("Invalid value for VR DA:
    # '19700101'"), through its logger and through warnings (which Django routes to logging).
    (re.compile(r"(Invalid value for VR [A-Z]{2}: )[^\n]*"), r"\1[redacted]"),
)


def scrub(text: str) -> str:
    """Remove query strings, share tokens and bearer tokens from a piece of log text."""
    for pattern, replacement in _SCRUBBERS:
        text = pattern.sub(replacement, text)
    return text


class RequestIdFilter(logging.Filter):
    """Attach the current request id to the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id()
        return True


class PHIScrubFilter(logging.Filter):
    """Rewrite the message so it carries no query string, token or bearer credential."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        record.msg = scrub(message)
        record.args = None
        # Django attaches the request object; its repr includes the full path with query string.
        if hasattr(record, "request"):
            record.request = None
        return True
