"""Protocol version 4: the version-3 framing with a Noise XX handshake and AEAD records.

``handshake`` holds the three handshake messages and their payloads, ``records`` the
record layer and every record's plaintext layout, ``server`` and ``client`` the two
sessions' state machines. Like the rest of ``eft_protocol``: no sockets, no clocks.
The protocol is written down in docs/PROTOCOL-v4.md.
"""
