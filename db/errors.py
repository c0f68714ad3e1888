"""Errors the database layer raises on purpose (``api.problems.PROBLEM_TYPES`` maps them to
HTTP problems; this layer knows nothing of HTTP)."""


class DbError(Exception):
    """Base class of every expected database-layer error."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(DbError):
    """The named consumer, key, dataset, budget or release does not exist (404)."""


class AlreadyExists(DbError):
    """A unique name is already taken (409)."""


class InvalidChange(DbError):
    """The change would break an invariant, e.g. a budget below what is spent (409)."""


class InvalidInput(DbError):
    """The request is well-formed but not acceptable, e.g. mismatched privacy models (422)."""


class CheckpointMismatch(DbError):
    """A checkpoint whose root is not this ledger's root at its size (409): the one who
    holds it saw another ledger, or this one's history was rewritten."""
