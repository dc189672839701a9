"""Block Storage API v3 microversions, as Cinder negotiates them.

The client asks with ``OpenStack-API-Version: volume 3.N`` (or the legacy
``OpenStack-Volume-microversion: 3.N``); no header means the minimum,
``latest`` the maximum. A malformed value is a 400, one outside the range a
406. The response names the version used and varies on the header.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

from iscsiattach.exception import InvalidInput, NotAcceptable

SERVICE = "volume"
HEADER = "OpenStack-API-Version"
LEGACY_HEADER = "OpenStack-Volume-microversion"
# ASCII digits only (\d also takes "٣"), at most 100 per part: int() refuses
# numbers of over 4,300 digits, and no version needs more than a few.
_VERSION = re.compile(r"([1-9][0-9]{0,99})\.(0|[1-9][0-9]{0,99})")
_MAX_DIGITS = 9


@total_ordering
@dataclass(frozen=True)
class Version:
    major: int
    minor: int

    @classmethod
    def parse(cls, text: str) -> Version:
        m = _VERSION.fullmatch(text.strip())
        if not m:
            raise InvalidInput(f"invalid API version {text[:40]!r}: expected MAJOR.MINOR, "
                               "such as 3.27")
        if max(len(m.group(1)), len(m.group(2))) > _MAX_DIGITS:
            raise NotAcceptable(f"Version {text[:40]} is not supported by the API. "
                                f"Minimum is {MIN} and maximum is {MAX}.")
        return cls(int(m.group(1)), int(m.group(2)))

    def __lt__(self, other: Version) -> bool:
        return (self.major, self.minor) < (other.major, other.minor)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"


MIN = Version(3, 0)
MAX = Version(3, 54)
ATTACHMENTS = Version(3, 27)       # the attachments API
ATTACH_COMPLETE = Version(3, 44)   # os-complete
ATTACH_MODE = Version(3, 54)       # "mode" on attachment create


def negotiate(headers: dict[str, str]) -> Version:
    """The version a request asks for; ``headers`` keys are lower case."""
    raw = headers.get(HEADER.lower())
    if raw is not None:
        service, _, value = raw.strip().partition(" ")
        if service.lower() != SERVICE or not value.strip():
            raise InvalidInput(f"invalid {HEADER} header {raw!r}: expected 'volume 3.N'")
    else:
        legacy = headers.get(LEGACY_HEADER.lower())
        if legacy is None:
            return MIN
        value = legacy
    value = value.strip()
    if value.lower() == "latest":
        return MAX
    version = Version.parse(value)
    if not MIN <= version <= MAX:
        raise NotAcceptable(f"Version {version} is not supported by the API. "
                                   f"Minimum is {MIN} and maximum is {MAX}.")
    return version


def response_headers(version: Version) -> list[tuple[str, str]]:
    return [(HEADER, f"{SERVICE} {version}"), ("Vary", HEADER)]
