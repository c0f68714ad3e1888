"""Domain errors raised by the privacy layer (``api.problems.PROBLEM_TYPES`` maps them to
HTTP problems; this layer knows nothing of HTTP)."""


class PrivacyError(Exception):
    """Base class of every error the privacy layer raises on purpose."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidQuery(PrivacyError):
    """The query cannot be answered as asked (unknown column, bad bounds, ...): a 422."""


class InvalidDataset(PrivacyError):
    """The dataset declaration does not match its file or is inconsistent: a 422."""


class ReleaseFailed(PrivacyError):
    """The DP computation failed after the data was read (a 500; the debit is not refunded).

    Its message never contains private data.
    """
