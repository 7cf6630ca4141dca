"""Which stores the server writes to: the data directory (the default) or ``--store
s3://bucket/prefix``. The S3 store's modules are imported only when chosen, so the
default install needs no aiobotocore (it comes with the ``s3`` extra)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .config import ServerConfig
from .file_store import FileStore, LocalFileStore, LocalUnfinishedUploads, UnfinishedUploads
from .partial_uploads import OnDrop, PartialStore, partial_quota
from .s3_settings import parse_store_url, s3_settings
from .startup import StoreUnusable


@dataclass
class Stores:
    files: FileStore
    unfinished: UnfinishedUploads
    #: For the ``listening`` line: ``local`` or the S3 URL (never a credential).
    description: str = "local"
    s3_client: Any = None
    #: Unfinished uploads recorded in PostgreSQL (S3 with a PostgreSQL registry).
    shared: Any = None

    async def open(self) -> None:
        """Check the store before serving: raises ``StoreUnusable``."""
        if self.s3_client is not None:
            await self.s3_client.open()
        if self.shared is not None:
            try:
                await self.shared.connect()
            except Exception as exc:  # the registry opened a moment ago: rare
                raise StoreUnusable(
                    f"cannot record unfinished uploads in PostgreSQL: {exc}",
                    store=self.description,
                ) from exc

    async def close(self) -> None:
        if self.shared is not None:
            await self.shared.close()
        if self.s3_client is not None:
            await self.s3_client.close()


def choose_stores(config: ServerConfig, environ: Mapping[str, str], on_drop: OnDrop) -> Stores:
    quota = partial_quota(config)
    if not config.store:
        return Stores(
            LocalFileStore(config.data_dir),
            LocalUnfinishedUploads(PartialStore(config.data_dir, quota, on_drop=on_drop)),
        )
    try:
        settings = s3_settings(parse_store_url(config.store), environ)
    except ValueError as exc:
        raise StoreUnusable(str(exc), store=config.store) from None
    try:
        from .s3_store import S3Client, S3FileStore  # noqa: PLC0415 - the optional extra
        from .s3_unfinished import S3UnfinishedUploads  # noqa: PLC0415
    except ImportError as exc:
        raise StoreUnusable(
            f"the S3 store needs aiobotocore ({exc}): pip install 'eft[s3]'", store=config.store
        ) from None
    client = S3Client(settings)
    if config.registry:
        # Replicas share the registry: their unfinished uploads go in it, so that any of
        # them resumes an upload another started (docs/SCALING.md).
        from .pg_connect import parse_registry_url  # noqa: PLC0415
        from .s3_shared_uploads import SharedUnfinishedUploads  # noqa: PLC0415

        shared = SharedUnfinishedUploads(
            client, parse_registry_url(config.registry, environ), quota, on_drop=on_drop
        )
        return Stores(
            S3FileStore(client, config.max_file_size),
            shared,
            description=config.store,
            s3_client=client,
            shared=shared,
        )
    return Stores(
        S3FileStore(client, config.max_file_size),
        S3UnfinishedUploads(client, config.data_dir, quota, on_drop=on_drop),
        description=config.store,
        s3_client=client,
    )
