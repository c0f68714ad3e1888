"""Admin actions, one module per domain, called by the HTTP routes and by ``ruis admin``.

Each function takes the database (and the settings or data directory it needs),
the :class:`Actor` doing it and, for a change, the request id that goes on its
ledger entries; it returns the public model of :mod:`api.schemas`. The routes
add only HTTP (parsing, the role check, status codes); ``ruis admin`` adds only
its command line. Domain errors (``db.errors``, ``privacy.errors``,
``api.problems``) pass through unchanged.

- :mod:`api.services.consumers`: consumers and their API keys
- :mod:`api.services.datasets`: registering, listing and reinstating datasets
- :mod:`api.services.budgets`: setting and listing budgets
- :mod:`api.services.limits`: per-consumer limit overrides
- :mod:`api.services.ledger`: reading, verifying and exporting the ledger
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from api.schemas import Role
from db.accounts import Principal


@dataclass(frozen=True)
class Actor:
    """Who does an action: ``name`` is ledgered as its actor; an analyst sees only its own
    budgets and the datasets it holds one on. ``ruis admin`` acts as ``cli:<user>``, an
    admin that is no consumer."""

    name: str
    role: Role = "admin"
    consumer_id: int | None = None

    @classmethod
    def of(cls, principal: Principal) -> Actor:
        """The authenticated caller of a request."""
        return cls(principal.name, cast(Role, principal.role), principal.consumer_id)

    @property
    def is_analyst(self) -> bool:
        """Whether the actor sees only what is its own."""
        return self.role == "analyst"
