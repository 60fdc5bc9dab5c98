"""The registry: who and what the rules reason about, kept in SQLite (or PostgreSQL).

``RegistryStore`` reads and writes the frozen values of ``collector.domain``;
``RegistryStore.snapshot().view()`` is the in-memory ``RegistryView`` the rule engine uses;
``csv_import`` loads district spreadsheets all-or-nothing; ``cli`` is ``shouhu registry``.
"""

from __future__ import annotations

from collector.registry.store import (
    Change,
    OwnedContact,
    RegistrySnapshot,
    RegistryStore,
)

__all__ = ["Change", "OwnedContact", "RegistrySnapshot", "RegistryStore"]
