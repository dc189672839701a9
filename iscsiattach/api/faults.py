"""The one place where our exception tree becomes HTTP (Cinder's fault bodies).

Body shape: ``{"<faultName>": {"code": N, "message": "..."}}``. The status of
each of our classes comes from the tree's one table (``exception.EDGES``);
our exceptions carry messages written for the caller and free of secrets.
Any other exception is a 500 with a generic message, logged with its
traceback.
"""
from __future__ import annotations

import logging

from iscsiattach import exception as exc

LOG = logging.getLogger(__name__)

FAULT_NAMES = {400: "badRequest", 401: "unauthorized", 403: "forbidden", 404: "itemNotFound",
               405: "badMethod", 409: "conflictingRequest", 413: "overLimit",
               415: "badMediaType", 501: "notImplemented", 503: "serviceUnavailable"}
GENERIC_500 = ("The server has either erred or is incapable of performing the "
               "requested operation.")


def fault_body(status: int, message: str) -> dict:
    return {FAULT_NAMES.get(status, "computeFault"): {"code": status, "message": message}}


def to_fault(error: BaseException) -> tuple[int, dict]:
    """(status, body) for an exception raised while serving a request."""
    if isinstance(error, exc.IscsiAttachError):
        status = exc.http_status(error)
        return status, fault_body(status, error.message)
    LOG.error("unexpected error while serving a request", exc_info=error)
    return 500, fault_body(500, GENERIC_500)
