"""Logging filters named by settings.LOGGING."""

import logging


class ForbiddenWithoutTraceback(logging.Filter):
    """A 403 is a refusal, not a fault: Django logs PermissionDenied with its traceback, which buries real
    errors in a busy log. Keep the record (one line: "Forbidden (Permission denied): /path"), drop the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "status_code", None) == 403:
            record.exc_info = None
            record.exc_text = None
        return True
