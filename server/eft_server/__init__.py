"""eft's server: an asyncio (uvloop) driver around ``eft_protocol.server_session``."""

from .app import Server
from .config import ServerConfig

__all__ = ["Server", "ServerConfig"]
