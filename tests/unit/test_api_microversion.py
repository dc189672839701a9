"""Microversion negotiation."""
from __future__ import annotations

import pytest

from iscsiattach.api.microversion import MAX, MIN, Version, negotiate, response_headers
from iscsiattach.exception import InvalidInput, NotAcceptable


@pytest.mark.parametrize("headers,want", [
    ({}, MIN),
    ({"openstack-api-version": "volume 3.27"}, Version(3, 27)),
    ({"openstack-api-version": "Volume  3.54 "}, Version(3, 54)),
    ({"openstack-api-version": "volume latest"}, MAX),
    ({"openstack-volume-microversion": "3.44"}, Version(3, 44)),
    ({"openstack-api-version": "volume 3.0", "openstack-volume-microversion": "3.5"},
     Version(3, 0)),
])
def test_negotiated(headers, want):
    assert negotiate(headers) == want


@pytest.mark.parametrize("value", ["volume 3", "volume 3.x", "compute 3.27", "volume",
                                   "3.27", "volume 03.1", "volume 3.01"])
def test_malformed_is_a_bad_request(value):
    with pytest.raises(InvalidInput):
        negotiate({"openstack-api-version": value})


@pytest.mark.parametrize("value", ["volume 2.0", "volume 3.55", "volume 4.0"])
def test_out_of_range_is_not_acceptable(value):
    with pytest.raises(NotAcceptable, match="Minimum is 3.0 and maximum is 3.54"):
        negotiate({"openstack-api-version": value})


def test_response_names_the_version_and_varies():
    assert response_headers(Version(3, 27)) == [("OpenStack-API-Version", "volume 3.27"),
                                                ("Vary", "OpenStack-API-Version")]
    assert Version(3, 9) < Version(3, 10) and str(Version(3, 10)) == "3.10"
