"""eft's Python client: an asyncio driver around ``eft_protocol.client_session``."""

from .errors import ClientError, ExitCode
from .transfer import ClientSettings, run

__all__ = ["ClientError", "ClientSettings", "ExitCode", "run"]
