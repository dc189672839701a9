"""Values that cross the target-backend interface, validated on construction.

Everything here is plain data: what to export (``ExportSpec``), whom to let in
(``Grant``), and what a backend found (``ExportState``). A value that exists
has passed validation, so backends never see malformed names, addresses or
secrets, and a refused request has changed nothing.
"""
from __future__ import annotations

import enum
import ipaddress
import re
import uuid
from dataclasses import dataclass, field

from iscsiattach.exception import InvalidInput
from iscsiattach.secret import Secret

# RFC 3720 3.2.6.3: iqn.yyyy-mm.<reversed domain>[:<unique name>]; eui. and
# naa. forms for completeness. Lower case only: LIO normalises names, so an
# upper-case IQN would never match what configfs shows back.
# The naming authority has at least two labels and no '_' (rtslib refuses
# both, and RFC 3722's stringprep profile has no '_').
_IQN_RE = re.compile(r"iqn\.\d{4}-(0[1-9]|1[0-2])\.[a-z0-9]([a-z0-9-]*[a-z0-9])?"
                     r"(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+(:[a-z0-9.:-]+)?")
_EUI_RE = re.compile(r"eui\.[0-9a-f]{16}")
_NAA_RE = re.compile(r"naa\.[125c-f][0-9a-f]{15}")
MAX_NAME_LEN = 223  # RFC 3720: an iSCSI name is at most 223 bytes
# CHAP names and secrets are written to configfs (max 255) and to open-iscsi's
# node records; printable ASCII without blanks or quotes survives both.
_CHAP_CHARS = re.compile(r"[A-Za-z0-9!#$%&()*+,./:;<=>?@\[\]^_{|}~-]+")
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# C0 controls and DEL: never in a path the kernel is handed.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
CHAP_SECRET_MIN = 12  # RFC 3720 8.2.1: at least 96 bits
CHAP_MAX = 255
# The kernel's NAA designator for a LUN: IEEE company id 0x001405 followed
# by the first 25 hex digits of the unit serial (target_core_spc.c).
LIO_NAA_PREFIX = "6001405"
MAX_BACKING_PATH = 255


def validate_iqn(name: str, what: str = "initiator name") -> str:
    if not isinstance(name, str) or len(name) > MAX_NAME_LEN or not (
            _IQN_RE.fullmatch(name) or _EUI_RE.fullmatch(name) or _NAA_RE.fullmatch(name)):
        raise InvalidInput(f"invalid {what} {name!r}: expected an RFC 3720 iSCSI "
                           "name such as iqn.2004-10.com.example:host1 (lower case)")
    return name


def validate_prefix(prefix: str) -> str:
    """The target prefix must make a valid IQN once a volume name is added."""
    validate_iqn(prefix + "volume-00000000-0000-0000-0000-000000000000",
                 "target prefix")
    if not prefix.endswith((":", ".", "-")):
        raise InvalidInput(f"invalid target prefix {prefix!r}: it must end with ':', '.' or '-'")
    return prefix


def validate_volume_id(volume_id: str) -> str:
    if isinstance(volume_id, str) and _CANONICAL_UUID.fullmatch(volume_id):
        return volume_id        # the usual case, without building a UUID
    try:
        canonical = str(uuid.UUID(str(volume_id)))
    except ValueError:
        raise InvalidInput(f"invalid volume id {volume_id!r}: expected a UUID") from None
    if canonical != volume_id:
        raise InvalidInput(f"invalid volume id {volume_id!r}: expected the lower-case "
                           f"hyphenated form {canonical}")
    return volume_id


def volume_name(volume_id: str) -> str:
    return f"volume-{volume_id}"


# ``volume_name``'s inverse: the volume id in a name of ours.
VOLUME_RE = re.compile(r"^volume-([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")


def unit_serial(volume_id: str) -> str:
    """VPD 0x80 unit serial the LUN advertises: the volume id itself."""
    return volume_id


def naa_wwn(volume_id: str) -> str:
    """VPD 0x83 NAA designator the kernel derives from the unit serial."""
    return "naa." + LIO_NAA_PREFIX + volume_id.replace("-", "")[:25]


@dataclass(frozen=True)
class Portal:
    """An address the target listens on; ``str()`` is its ``name``, Cinder's "ip:port"."""
    ip: str
    port: int = 3260

    def __post_init__(self) -> None:
        try:
            if "%" in str(self.ip):     # scoped IPv6: the kernel takes no zone
                raise ValueError
            addr = ipaddress.ip_address(self.ip)
        except ValueError:
            raise InvalidInput(f"invalid portal address {self.ip!r}") from None
        if addr.is_multicast:
            raise InvalidInput(f"invalid portal address {self.ip!r}: multicast")
        if isinstance(self.port, bool) or not isinstance(self.port, int) \
                or not 0 < self.port < 65536:
            raise InvalidInput(f"invalid portal port {self.port!r}: expected 1-65535")
        object.__setattr__(self, "ip", addr.compressed)

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.ip

    @property
    def address(self) -> str:
        """The IP as written before ":port": IPv6 in brackets (RFC 3986)."""
        return f"[{self.ip}]" if self.is_ipv6 else self.ip

    @property
    def name(self) -> str:
        """"ip:port", IPv6 in brackets: Cinder's target_portal, what
        ``parse`` reads, and the portal's folder name in LIO's configfs."""
        return f"{self.address}:{self.port}"

    def __str__(self) -> str:
        return self.name

    @classmethod
    def parse(cls, text: str, default_port: int = 3260) -> Portal:
        """"10.0.0.1", "10.0.0.1:3261", "::1", "[::1]:3261"."""
        text = text.strip()
        if text.startswith("["):
            host, bracket, rest = text[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else None
            if not bracket or (rest and port is None):
                raise InvalidInput(f"invalid portal {text!r}")
        elif text.count(":") == 1:
            host, port = text.split(":")
        else:
            host, port = text, None
        try:
            return cls(host, int(port) if port else default_port)
        except ValueError:
            raise InvalidInput(f"invalid portal {text!r}") from None


class BackingKind(enum.StrEnum):
    FILE = "fileio"     # a regular file: direct (asynchronous) or page-cache I/O
    BLOCK = "block"     # a block device (loop, LV, disk) through iblock


@dataclass(frozen=True)
class Backing:
    kind: BackingKind
    path: str
    size: int | None = None   # bytes; required for files, ignored for devices
    # Files: asynchronous fileio, which the kernel does as direct I/O (the
    # default), or, where the filesystem has no direct I/O (tmpfs before
    # Linux 6.6), fileio through the page cache. Devices: always True.
    direct_io: bool = True

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "kind", BackingKind(self.kind))
        except ValueError:
            raise InvalidInput(f"invalid backing kind {self.kind!r}: expected "
                               "fileio or block") from None
        # configfs control strings are comma-separated key=value pairs, and
        # the kernel silently cuts a file name at 255 bytes.
        if not isinstance(self.path, str) or not self.path.startswith("/") \
                or "," in self.path or "/../" in self.path + "/" \
                or _CONTROL.search(self.path) \
                or len(self.path.encode()) > MAX_BACKING_PATH:
            raise InvalidInput(f"invalid backing path {self.path!r}: expected an absolute "
                               f"path of at most {MAX_BACKING_PATH} bytes without ',', "
                               "'..' or control characters")
        if self.kind is BackingKind.BLOCK:
            object.__setattr__(self, "size", None)   # a device has its own size
            object.__setattr__(self, "direct_io", True)
        if self.kind is BackingKind.FILE and (
                not isinstance(self.size, int) or self.size < 512 or self.size % 512):
            raise InvalidInput(f"invalid size {self.size!r} for {self.path}: expected a "
                               "positive multiple of 512 bytes")


@dataclass(frozen=True)
class ExportSpec:
    """What one exported volume must look like: LUN 0 of its own target."""
    volume_id: str
    backing: Backing
    portals: tuple[Portal, ...]

    def __post_init__(self) -> None:
        validate_volume_id(self.volume_id)
        portals = tuple(self.portals)
        if not portals:
            raise InvalidInput("an export needs at least one portal")
        if len(set(portals)) != len(portals):
            raise InvalidInput("duplicate portals: " + ", ".join(map(str, portals)))
        object.__setattr__(self, "portals", portals)

    @property
    def name(self) -> str:
        return volume_name(self.volume_id)


@dataclass(frozen=True)
class ChapCredentials:
    """One-way CHAP (the target checks the initiator), optionally mutual."""
    userid: str
    password: Secret
    mutual_userid: str | None = None
    mutual_password: Secret | None = None

    def __post_init__(self) -> None:
        _check_chap_name(self.userid)
        _check_chap_secret(self.password, "CHAP secret")
        if (self.mutual_userid is None) != (self.mutual_password is None):
            raise InvalidInput("mutual CHAP needs both a user name and a secret")
        if self.mutual_userid is not None:
            _check_chap_name(self.mutual_userid)
            _check_chap_secret(self.mutual_password, "mutual CHAP secret")
            if self.mutual_password == self.password:
                # RFC 3720 8.2.1: the two directions must not share a secret.
                raise InvalidInput("the mutual CHAP secret must differ from the CHAP secret")

    @property
    def mutual(self) -> bool:
        return self.mutual_userid is not None


def _check_chap_name(name: object) -> None:
    if not isinstance(name, str) or not 0 < len(name) <= CHAP_MAX \
            or not _CHAP_CHARS.fullmatch(name) or name.startswith("NULL"):
        raise InvalidInput(f"invalid CHAP user name {name!r}: 1-{CHAP_MAX} printable "
                           "characters, no blanks or quotes, not starting with NULL")


def _check_chap_secret(secret: object, what: str) -> None:
    # Never echo the value: the message names the rule only.
    if not isinstance(secret, Secret):
        raise InvalidInput(f"{what} must be given as a Secret")
    value = secret.reveal()
    # The kernel treats any value starting with "NULL" as "not set".
    if not CHAP_SECRET_MIN <= len(value) <= CHAP_MAX or not _CHAP_CHARS.fullmatch(value) \
            or value.startswith("NULL"):
        raise InvalidInput(f"invalid {what}: {CHAP_SECRET_MIN}-{CHAP_MAX} printable "
                           "characters, no blanks or quotes, not starting with NULL")


@dataclass(frozen=True)
class Grant:
    """Let one initiator in, with its own credentials, rw or read-only."""
    initiator: str
    chap: ChapCredentials
    read_only: bool = False

    def __post_init__(self) -> None:
        validate_iqn(self.initiator)
        if not isinstance(self.read_only, bool):
            raise InvalidInput(f"read_only must be true or false, not {self.read_only!r}")


@dataclass(frozen=True)
class ExportInfo:
    """What a host needs to find and verify the exported LUN."""
    volume_id: str
    target_iqn: str
    lun: int
    portals: tuple[Portal, ...]
    unit_serial: str
    naa_wwn: str


# The TPG settings that keep a target closed: CHAP required, no dynamic
# (demo mode) ACLs, and nothing cached from one.
SECURE_TPG_ATTRIBUTES: dict[str, str] = {
    "authentication": "1",
    "generate_node_acls": "0",
    "demo_mode_write_protect": "1",
    "cache_dynamic_acls": "0",
    # SendTargets shows a target only to initiators that have an ACL on it.
    "demo_mode_discovery": "0",
    # A new LUN mapping starts read-only; rw grants then lift it. Without it
    # a read-only grant is writable between mapping and flag.
    "prod_mode_write_protect": "1",
}


@dataclass(frozen=True)
class AclState:
    initiator: str
    chap: ChapCredentials | None      # None when the ACL has no usable CHAP
    mapped_luns: dict[int, bool]      # mapped LUN -> write protected


@dataclass(frozen=True)
class ExportState:
    """What a backend found for one volume (inspection, no side effects)."""
    volume_id: str
    target_iqn: str
    tpg_enabled: bool
    tpg_attributes: dict[str, str]
    auth_method: str | None
    portals: frozenset[Portal]
    lun0_backing: Backing | None
    unit_serial: str | None
    acls: dict[str, AclState] = field(default_factory=dict)


@dataclass(frozen=True)
class TargetSession:
    """An initiator logged in to one of our targets, as the target reports
    it. LIO keeps one session per ACL in view (its newest)."""
    initiator: str
    session_id: int                   # the target's own, unique while its module is loaded
    state: str                        # e.g. LOGGED_IN, FAILED, IN_CONTINUE
    addresses: tuple[str, ...]        # each connection's initiator address


# The TPG attributes that alone open an export to anyone: without
# authentication, or with ACLs generated for every initiator (demo mode).
ACCESS_TPG_ATTRIBUTES = ("authentication", "generate_node_acls")


@dataclass(frozen=True)
class ExportOutline:
    """What decides who reaches an export, in a few reads: the reconciler
    compares this on every pass, and the whole ExportState on a volume's
    turn (CHAP values, backing, serial, portals, mapping flags)."""
    tpg_enabled: bool
    access_attributes: dict[str, str]
    acls: frozenset[str]              # initiators with an ACL
    lun0: bool

    @classmethod
    def of(cls, state: ExportState) -> ExportOutline:
        return cls(state.tpg_enabled,
                   {a: v for a, v in state.tpg_attributes.items() if a in ACCESS_TPG_ATTRIBUTES},
                   frozenset(state.acls), state.lun0_backing is not None)
