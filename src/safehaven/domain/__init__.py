"""Pure domain: agreements, firewall, requests, decisions and the request lifecycle.

Nothing in this package performs I/O or imports an adapter (web framework, ORM, linkage
engine); adapters depend on it, never the other way round.
"""
