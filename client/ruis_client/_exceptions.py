"""The one exception hierarchy of the client.

::

    RuisError                   anything this client raises about a call
    ├── TransportError          the server could not be reached or did not answer in time
    ├── LedgerInconsistency     the ledger's checkpoints disagree with one seen before
    │   └── ReceiptInvalid      a release's receipt is missing or does not check out
    └── APIError                the server answered with an error (a problem document)
        ├── Unauthorized        401: missing, unknown or revoked key
        ├── Forbidden           403: the key's role may not do this
        ├── NotFound            404: no such dataset or release (or no budget on it)
        ├── Conflict            409
        │   └── BudgetExceeded  409 ``budget-exceeded``: see ``asked`` and ``remaining``
        ├── InvalidQuery        422: the query or request is invalid
        └── ServerError         5xx

Every :class:`APIError` carries the server's RFC 9457 problem document as
:attr:`APIError.problem`. Wrong arguments to a client method (two privacy
amounts, none at all, ...) raise :class:`ValueError` before anything is sent.

The two ledger errors are raised only by a client made with ``on_inconsistency="raise"``;
by default the client warns instead (:class:`LedgerInconsistencyWarning`,
:class:`ReceiptInvalidWarning`) and returns the release with ``verified=False``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ruis_client._models import Checkpoint, Release


@dataclass(frozen=True)
class Problem:
    """An RFC 9457 problem document: ``type``, ``title``, ``status``, ``detail``; the whole
    document (with ``errors``, ``remaining``, ...) is in :attr:`document`."""

    type: str
    title: str
    status: int
    detail: str
    document: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_document(cls, document: Mapping[str, Any], status: int) -> Problem:
        """A problem from a decoded response body (lenient about missing fields)."""
        return cls(
            type=str(document.get("type", "about:blank")),
            title=str(document.get("title", "")),
            status=(document["status"] if isinstance(document.get("status"), int) else status),
            detail=str(document.get("detail", "")),
            document=dict(document),
        )


class RuisError(Exception):
    """Base class of every error raised by :class:`ruis_client.Ruis` about a call."""


class TransportError(RuisError):
    """The server could not be reached, or did not answer in time."""


class LedgerInconsistency(RuisError):
    """The ledger showed a history that does not extend the one this client saw before:
    a smaller or different tree than :attr:`old` (the last checkpoint the client
    holds), a consistency proof to :attr:`new` that fails, or another signing key.

    Evidence against the server: :attr:`old` is kept as the client's last checkpoint.
    :attr:`release` is the release whose answer showed it (its values were paid for)."""

    def __init__(
        self,
        message: str,
        *,
        old: Checkpoint | None = None,
        new: Checkpoint | None = None,
        release: Release | None = None,
    ) -> None:
        super().__init__(message)
        self.old = old
        """The last checkpoint the client held (None before the first)."""
        self.new = new
        """The checkpoint that was not accepted (None when there was none to read)."""
        self.release = release
        """The release whose answer carried it (None when none did)."""


class ReceiptInvalid(LedgerInconsistency):
    """A release's receipt is missing or fails its own checks: the checkpoint is not
    signed by the ledger's key, the entry's hash does not recompute, the entry is not
    this release's debit, or the inclusion proof does not lead to the checkpoint's root."""


class LedgerInconsistencyWarning(UserWarning):
    """Warned (by default, instead of raising) with the :class:`LedgerInconsistency` in
    :attr:`error`."""

    def __init__(self, error: LedgerInconsistency) -> None:
        super().__init__(str(error))
        self.error = error


class ReceiptInvalidWarning(LedgerInconsistencyWarning):
    """Warned (by default, instead of raising) with the :class:`ReceiptInvalid` in
    :attr:`error`."""


class SignatureUncheckedWarning(UserWarning):
    """Warned once per client without the ``cryptography`` package: receipts' entry hashes
    and inclusion proofs are checked, not the ledger's signature, so releases come back
    with ``verified=False`` (``pip install ruis-client[verify]``)."""


class APIError(RuisError):
    """The server answered with an error status; :attr:`problem` says what went wrong."""

    def __init__(self, problem: Problem, *, request_id: str | None = None) -> None:
        super().__init__(f"{problem.status} {problem.title}: {problem.detail}")
        self.problem = problem
        self.request_id = request_id
        """The ``X-Request-ID`` of the failed request (quote it when asking an admin)."""

    @property
    def status(self) -> int:
        """The HTTP status."""
        return self.problem.status


class Unauthorized(APIError):
    """401: the API key is missing, unknown or revoked."""


class Forbidden(APIError):
    """403: the key is valid but its role may not do this (e.g. an auditor running a query)."""


class NotFound(APIError):
    """404: no such dataset or release; also a dataset you hold no budget on."""


class Conflict(APIError):
    """409: the request conflicts with what the server holds."""


class BudgetExceeded(Conflict):
    """409 ``budget-exceeded``: the query costs more than your remaining budget (or the
    dataset's remaining cap). Nothing was spent; :attr:`asked` says what the query costs and
    :attr:`remaining` what is left."""

    @property
    def asked(self) -> Mapping[str, Any]:
        """What the query costs, in the budget's unit, e.g. ``{"epsilon": 0.5}``."""
        asked: Mapping[str, Any] = self.problem.document.get("asked") or {}
        return asked

    @property
    def remaining(self) -> Mapping[str, Any]:
        """What remains, in the budget's unit, e.g. ``{"epsilon": 0.3}``; with
        ``"dataset_cap"`` when the dataset's cap is what ran out."""
        remaining: Mapping[str, Any] = self.problem.document.get("remaining") or {}
        return remaining


class DatasetRetired(APIError):
    """410 ``dataset-retired``: the dataset answers no new query or preview (nothing was
    spent); your earlier releases on it can still be re-read."""


class InvalidQuery(APIError):
    """422: the query (or another request) is invalid: unknown column, bad bounds, ..."""


class ServerError(APIError):
    """5xx: the server failed or is busy; a release that failed after its debit is not
    refunded (the problem says so)."""


def error_for(problem: Problem, *, request_id: str | None = None) -> APIError:
    """The exception for a problem answered by the server."""
    status = problem.status
    cls: type[APIError]
    if status == 409 and problem.type == "budget-exceeded":
        cls = BudgetExceeded
    elif status >= 500:
        cls = ServerError
    else:
        cls = _BY_STATUS.get(status, APIError)
    return cls(problem, request_id=request_id)


_BY_STATUS: dict[int, type[APIError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: DatasetRetired,
    422: InvalidQuery,
}
