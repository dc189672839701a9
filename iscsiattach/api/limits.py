"""The limits of the network face, as values (from ``[api]`` options)."""
from __future__ import annotations

import resource
from dataclasses import dataclass, replace

# File descriptors kept for everything but client connections: the listening
# socket, the store's connections (db, WAL, shm each), configfs and lock files,
# os-brick-free daemon internals, the journal.
FD_RESERVE = 96


@dataclass(frozen=True)
class Limits:
    max_header_bytes: int = 32768
    max_header_count: int = 100
    max_url_length: int = 8192
    max_body_bytes: int = 65536
    max_connections: int = 1000
    workers: int = 8
    max_queued_requests: int = 64
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keepalive_timeout: float = 15.0
    tls_handshake_timeout: float = 10.0
    max_tls_handshakes: int = 128
    refused_log_rate: float = 10.0
    unauthenticated_rate: float = 20.0

    @classmethod
    def from_conf(cls, api_conf) -> Limits:
        return cls(**{name: getattr(api_conf, name) for name in cls.__dataclass_fields__})

    def fitted_to_fd_limit(self) -> Limits:
        """``max_connections`` lowered so that connections alone can never
        exhaust the process's open files (a full table stops accept())."""
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return self
        room = max(8, soft - FD_RESERVE)
        return self if self.max_connections <= room else replace(self, max_connections=room)
