"""eft's Python client: asyncio drivers around ``eft_protocol``'s client sessions.

The drivers are ``eft_client.transfer.run`` (version 3) and
``eft_client.transfer_v4.run_v4``; neither is imported here, so a version-4 run never
loads version 3's RSA.
"""

from .errors import ClientError, ExitCode
from .settings import ClientSettings

__all__ = ["ClientError", "ClientSettings", "ExitCode"]
