"""The tests' PostgreSQL cluster: the lab's (eft_lab.postgres), which
``eft-lab --servers N`` starts the same way for its replicas."""

from __future__ import annotations

from eft_lab.postgres import (
    PORT,
    SUPERUSER,
    PostgresCluster,
    PostgresMissing,
    find_bin_dir,
)

__all__ = ["PORT", "SUPERUSER", "PostgresCluster", "PostgresMissing", "find_bin_dir"]
