"""Every Daraja error and result code we know, with its meaning and what the system does.

Synchronous errors (``errorCode`` in the error envelope) become typed exceptions; asynchronous
result codes (STK callback / query ``ResultCode``) are described by :data:`RESULT_CODES`.
What the codes mean: docs/daraja.md ("Result codes", "STK Push").
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Action(StrEnum):
    """What the payment system does with an outcome."""

    FIX_REQUEST = "fix_request"  # our request was wrong: fail the payment, surface to the caller
    FIX_CONFIG = "fix_config"  # credentials / shortcode / product: fail, an operator must act
    REFRESH_TOKEN = "refresh_token"  # drop the cached token and retry once
    RETRY_LATER = "retry_later"  # throttled or busy: the caller may retry after a pause
    WAIT = "wait"  # still pending: ask again later, never treat as failed
    FAIL = "fail"  # final failure of this payment attempt
    SUCCEED = "succeed"


@dataclass(frozen=True)
class CodeInfo:
    code: str
    meaning: str
    action: Action


def _catalogue(*rows: tuple[str, str, Action]) -> dict[str, CodeInfo]:
    return {code: CodeInfo(code, meaning, action) for code, meaning, action in rows}


ERROR_CODES = _catalogue(
    ("400.002.02", "Bad request: a field is invalid (the message names it)", Action.FIX_REQUEST),
    ("400.002.05", "Invalid request payload", Action.FIX_REQUEST),
    ("400.003.01", "Invalid access token", Action.REFRESH_TOKEN),
    ("400.008.01", "Invalid authentication type (OAuth needs Basic auth)", Action.FIX_CONFIG),
    ("400.008.02", "Invalid grant type", Action.FIX_CONFIG),
    ("401.001", "Invalid access token for this API product", Action.FIX_CONFIG),
    ("401.002.01", "Invalid access token: the app lacks this API product", Action.FIX_CONFIG),
    ("401.003.01", "No API product matches this call on the app", Action.FIX_CONFIG),
    ("404.001.01", "Resource not found (wrong path)", Action.FIX_CONFIG),
    ("404.001.03", "Invalid or expired access token", Action.REFRESH_TOKEN),
    ("404.001.04", "Invalid authentication header", Action.FIX_CONFIG),
    ("405.001", "Method not allowed", Action.FIX_CONFIG),
    (
        "500.001.1001",
        "M-Pesa refused: wrong credentials, merchant does not exist, or the subscriber is locked "
        "by a transaction in progress (the message says which)",
        Action.FAIL,
    ),
    ("500.002.1001", "Duplicate OriginatorConversationID", Action.FIX_REQUEST),
    ("500.003.02", "System busy / spike arrest violation", Action.RETRY_LATER),
    ("500.003.03", "Quota violation", Action.RETRY_LATER),
    ("500.003.1001", "Internal server error at Daraja", Action.RETRY_LATER),
)

RESULT_CODES = _catalogue(
    ("0", "The service request is processed successfully", Action.SUCCEED),
    ("1", "The balance is insufficient for the transaction", Action.FAIL),
    ("2", "Declined: amount below the minimum", Action.FAIL),
    ("3", "Declined: amount above the maximum", Action.FAIL),
    ("4", "Declined: daily transfer limit exceeded", Action.FAIL),
    ("8", "Declined: account would exceed its maximum balance", Action.FAIL),
    ("11", "Debit party in an invalid state", Action.FAIL),
    ("17", "Rule limited: same amount to the same customer within about 2 minutes", Action.FAIL),
    ("21", "Initiator not allowed", Action.FAIL),
    ("26", "System busy / traffic blocking condition in place", Action.FAIL),
    ("1001", "Unable to lock subscriber: a transaction is already in process", Action.FAIL),
    ("1019", "Transaction has expired", Action.FAIL),
    ("1025", "An error occurred while sending the push request (prompt too long?)", Action.FAIL),
    ("1031", "Request cancelled by user", Action.FAIL),
    ("1032", "Request cancelled by user", Action.FAIL),
    ("1036", "Request failed", Action.FAIL),
    ("1037", "No response from user / DS timeout, user cannot be reached", Action.FAIL),
    ("1101", "Invalid input parameter (prompt message prefix too long)", Action.FAIL),
    ("2001", "The initiator information is invalid (wrong PIN)", Action.FAIL),
    ("2006", "Account rule prevents the transaction", Action.FAIL),
    ("2028", "Not permitted by product assignment (TransactionType/PartyB mismatch)", Action.FAIL),
    ("2040", "Customer type not supported", Action.FAIL),
    ("2118", "No security credential is found", Action.FAIL),
    ("4999", "The transaction is still under processing", Action.WAIT),
    ("8006", "The security credential (PIN) is locked", Action.FAIL),
    ("9999", "An error occurred while sending the push request", Action.FAIL),
    ("E3008", "The user has a bad debt contract (sandbox)", Action.FAIL),
    ("SFC_IC0003", "The operator does not exist (till/paybill/type mismatch)", Action.FAIL),
)


def describe_result(code: str) -> CodeInfo:
    """What a ``ResultCode`` (STK callback or STK Query) means and what the system does about
    it. Success is ``0`` in any number of zeros; a code we have never seen is a final failure
    (Daraja sent a result, and it was not success)."""
    if code != "" and set(code) == {"0"}:
        return RESULT_CODES["0"]
    return RESULT_CODES.get(code, CodeInfo(code, "Unknown result code", Action.FAIL))


def result_is_pending(code: str) -> bool:
    """The answer says "still processing" (``4999``, STK Query only): never a failure."""
    return describe_result(code).action == Action.WAIT


def result_is_final_failure(code: str) -> bool:
    """A failure M-Pesa gave for this attempt (cancelled, wrong PIN, no answer from the
    phone, ...): a later success on a statement line alone does not overturn it."""
    return describe_result(code).action == Action.FAIL


def known_final_failure(code: str) -> bool:
    """As :func:`result_is_final_failure`, for a code of the catalogue only: our own codes
    (``expired``, ``daraja_unreachable``) are not M-Pesa's word."""
    return code in RESULT_CODES and result_is_final_failure(code)


class DarajaError(Exception):
    """Daraja answered, and the answer was not what we asked for."""

    def __init__(
        self,
        message: str,
        *,
        error_code: str = "",
        http_status: int | None = None,
        request_id: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.error_code = error_code
        self.http_status = http_status
        self.request_id = request_id

    @property
    def meaning(self) -> str:
        info = ERROR_CODES.get(self.error_code)
        return info.meaning if info else "Unknown Daraja error"

    def __str__(self) -> str:
        code = f"{self.error_code} " if self.error_code else ""
        status = f" (HTTP {self.http_status})" if self.http_status else ""
        return f"{code}{self.message}{status}"


class DarajaValidationError(DarajaError):
    """400.002.02 / 400.002.05: a field we sent is invalid. Final for this request."""


class DarajaInvalidTokenError(DarajaError):
    """404.001.03 / 400.003.01: the token expired or was invalidated: refresh and retry once."""


class DarajaConfigurationError(DarajaError):
    """Credentials, shortcode, product assignment, wrong path: an operator must fix it."""


class DarajaRejectedError(DarajaError):
    """500.001.1001: M-Pesa refused the request (wrong credentials, unknown merchant, ...)."""


class DarajaSubscriberLockedError(DarajaRejectedError):
    """500.001.1001 "Unable to lock subscriber": another push is in flight for this phone."""


class DarajaPendingError(DarajaError):
    """500.001.1001 "The transaction is being processed" on STK Query: still pending."""


class DarajaThrottledError(DarajaError):
    """500.003.02 / 500.003.03: spike arrest or quota; retry after a pause."""


class DarajaServerError(DarajaError):
    """500.003.1001 or an unexplained 5xx: Daraja failed; outcome of the request unknown."""


class DarajaProtocolError(DarajaError):
    """Daraja answered something we cannot read (not JSON, missing fields)."""


class DarajaTransportError(DarajaError):
    """No answer (timeout, connection reset). Whether Daraja acted is unknown."""


class DarajaUnreachableError(DarajaError):
    """No connection could be made (refused, unknown host, connect timeout): the request was
    never sent, so Daraja did nothing with it."""


def error_from_envelope(
    *, http_status: int, error_code: str, message: str, request_id: str
) -> DarajaError:
    """Map Daraja's ``{requestId, errorCode, errorMessage}`` to the typed error."""
    lowered = message.lower()

    def make(kind: type[DarajaError]) -> DarajaError:
        return kind(message, error_code=error_code, http_status=http_status, request_id=request_id)

    if error_code in ("404.001.03", "400.003.01"):
        return make(DarajaInvalidTokenError)
    if error_code in ("400.002.02", "400.002.05", "500.002.1001"):
        return make(DarajaValidationError)
    if error_code == "500.001.1001":
        if "being processed" in lowered or "under processing" in lowered:
            return make(DarajaPendingError)
        if "unable to lock subscriber" in lowered:
            return make(DarajaSubscriberLockedError)
        return make(DarajaRejectedError)
    if error_code in ("500.003.02", "500.003.03"):
        return make(DarajaThrottledError)
    if error_code.startswith(("400.008", "401", "404", "405")):
        return make(DarajaConfigurationError)
    if error_code.startswith("400"):
        return make(DarajaValidationError)
    return make(DarajaServerError)
