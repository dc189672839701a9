"""The one place where our exception tree becomes HTTP (Cinder's fault bodies).

Body shape: ``{"<faultName>": {"code": N, "message": "..."}}``. Our own
exceptions carry messages written for the caller and free of secrets; any
other exception is a 500 with a generic message, logged with its traceback.
"""
from __future__ import annotations

import logging

from iscsiattach import exception as exc

LOG = logging.getLogger(__name__)

FAULT_NAMES = {400: "badRequest", 401: "unauthorized", 403: "forbidden", 404: "itemNotFound",
               405: "badMethod", 409: "conflictingRequest", 413: "overLimit",
               415: "badMediaType", 501: "notImplemented", 503: "serviceUnavailable"}
STATUS_OF = [(exc.InvalidInput, 400), (exc.NotFound, 404), (exc.Conflict, 409),
             (exc.NotAcceptable, 406), (exc.IscsiAttachError, 500)]
GENERIC_500 = ("The server has either erred or is incapable of performing the "
               "requested operation.")


class HttpError(exc.IscsiAttachError):
    """An HTTP-level refusal made by the API layer itself (401, 405, 413, 415)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def fault_body(status: int, message: str) -> dict:
    return {FAULT_NAMES.get(status, "computeFault"): {"code": status, "message": message}}


def to_fault(error: BaseException) -> tuple[int, dict]:
    """(status, body) for an exception raised while serving a request."""
    if isinstance(error, HttpError):
        return error.status, fault_body(error.status, error.message)
    for cls, status in STATUS_OF:
        if isinstance(error, cls):
            return status, fault_body(status, str(error))
    LOG.error("unexpected error while serving a request", exc_info=error)
    return 500, fault_body(500, GENERIC_500)
