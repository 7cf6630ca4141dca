"""eft's protocol core: the wire format, its crypto and both sessions, with no I/O.

Nothing here opens a socket, reads a clock or starts a task; drivers in ``eft_server``
and ``eft_client`` do that. See ``wire`` for the messages, ``parser`` for the streaming
request parser, ``server_session`` and ``client_session`` for the state machines.
"""

from .codes import VERSION, RequestCode, ResponseCode
from .errors import ProtocolError

#: The release (the one place it is written: pyproject.toml reads it from here), shown by
#: every command's ``--version``. Not the protocol's version byte, which is ``VERSION``.
__version__ = "0.2.0.dev0"

__all__ = ["VERSION", "ProtocolError", "RequestCode", "ResponseCode", "__version__"]
