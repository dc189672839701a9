"""The API's contract with its own OpenAPI document, checked by schemathesis.

Run on the app over the fake target (tests/unit/test_openapi_fuzz.py) and on
the real daemon over real LIO (tests/functional/test_openapi_daemon.py):
every operation of /openapi.json gets generated requests, valid and not,
on a real socket with the token. No answer is a 5xx, every answer matches
the document (status, content type, body schema, headers), a request that
violates the schema is refused, a request without the token is refused, and
a refused request (4xx) changes nothing.
"""
from __future__ import annotations

from collections.abc import Callable

import schemathesis
from hypothesis import HealthCheck, given, settings, strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

# Not positive_data_acceptance: Cinder's wire answers 400 to schema-valid
# requests the state or the node refuses (a volume not available, a size
# over [volumes] max_size_gib), and so do we.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance,
          negative_data_rejection, ignored_auth]


def fuzz_every_operation(url: str, token: str, snapshot: Callable[[], object],
                         examples: int) -> int:
    """Fuzz each operation of ``url``'s document; the number of operations."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        _fuzz(operation, url, token, snapshot, examples)
    return len(operations)


def _fuzz(operation, url: str, token: str, snapshot: Callable[[], object],
          examples: int) -> None:
    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=st.one_of(operation.as_strategy(),
                          operation.as_strategy(generation_mode=GenerationMode.NEGATIVE)))
    def one(case):
        before = snapshot()
        headers = {"X-Auth-Token": token}
        if "OpenStack-API-Version" not in (case.headers or {}):
            headers["OpenStack-API-Version"] = "volume 3.54"    # else mostly 3.0's 404s
        response = case.call(base_url=url, headers=headers, timeout=120)
        assert response.status_code < 500, (operation.label, response.text[:300])
        case.validate_response(response, checks=CHECKS)
        if 400 <= response.status_code < 500:
            assert snapshot() == before, \
                f"{operation.label}: refused with {response.status_code} but changed state"
    one()
