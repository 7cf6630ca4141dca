"""The tests' S3 server: the lab's (eft_lab.seaweedfs), which ``eft-lab --servers N``
starts the same way for its replicas' shared store."""

from __future__ import annotations

from eft_lab.seaweedfs import (
    ACCESS_KEY,
    GRPC_OFFSET,
    SECRET_KEY,
    SeaweedFS,
    allocate_ports,
    weed_binary,
)

__all__ = ["ACCESS_KEY", "GRPC_OFFSET", "SECRET_KEY", "SeaweedFS", "allocate_ports", "weed_binary"]
