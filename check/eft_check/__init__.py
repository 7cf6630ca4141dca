"""eft-check: tells an implementer of protocol version 3 which rule their code breaks.

``eft-check server HOST:PORT`` drives a server under test; ``eft-check client -- CMD``
runs a client under test against a scripted server. docs/CONFORMANCE.md lists the checks.
"""
