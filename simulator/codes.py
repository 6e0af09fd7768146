"""Daraja codes and texts, spelt exactly as captured (docs/daraja.md).

ResultDesc wording drifts in real life (capitalisation, trailing dots); the texts here are the
most recent observed ones so that a client keyed on ResultDesc instead of ResultCode breaks
here first rather than in production.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

SUCCESS_CODE = "0"
SUCCESS_DESC = "The service request is processed successfully."
DS_TIMEOUT_DESC = "DS timeout user cannot be reached."
NO_RESPONSE_DESC = "No response from user."
OPERATOR_MISSING_CODE = "SFC_IC0003"

# Callback ResultCode -> ResultDesc (used when a script names a code without a text).
RESULT_DESCRIPTIONS: dict[str, str] = {
    SUCCESS_CODE: SUCCESS_DESC,
    "1": "The balance is insufficient for the transaction.",
    "17": "Rule limited.",
    "1001": "Unable to lock subscriber, a transaction is already in process for the current "
    "subscriber",
    "1019": "Transaction has expired.",
    "1025": "An error occurred while sending a push request.",
    "1031": "Request cancelled by user",
    "1032": "Request Cancelled by user.",
    "1037": NO_RESPONSE_DESC,
    "2001": "The initiator information is invalid.",
    "2028": "The request is not permitted according to product assignment.",
    "2118": "No security credential is found. Operation failed.",
    "8006": "The security credential is locked.",
    "9999": "An error occurred while sending a push request.",
    OPERATOR_MISSING_CODE: "The operator does not exist.",
}

# Synchronous texts.
PUSH_ACCEPTED_DESC = "Success. Request accepted for processing"
QUERY_ACCEPTED_DESC = "The service request has been accepted successfully"
PENDING_RESULT_CODE = "4999"
PENDING_RESULT_DESC = "The transaction is still under processing"
BEING_PROCESSED_MESSAGE = "The transaction is being processed"
SUBSCRIBER_LOCKED_MESSAGE = RESULT_DESCRIPTIONS["1001"]


@dataclass(eq=False)
class DarajaError(Exception):
    """A synchronous Daraja failure, rendered as ``{"requestId","errorCode","errorMessage"}``.

    ``empty_body`` reproduces production OAuth, which answers bad credentials with HTTP 400 and
    no body at all.
    """

    status: int
    error_code: str
    error_message: str
    request_id: str | None = None
    empty_body: bool = False

    def __str__(self) -> str:
        return f"{self.status} {self.error_code} {self.error_message}"

    def envelope(self, request_id: str) -> dict[str, Any]:
        return {
            "requestId": self.request_id or request_id,
            "errorCode": self.error_code,
            "errorMessage": self.error_message,
        }


def invalid_field(field: str) -> DarajaError:
    """API-gateway validation failure: ``400.002.02 Bad Request - Invalid <field>``."""
    return DarajaError(400, "400.002.02", f"Bad Request - Invalid {field}")


def mpesa_rejection(message: str, request_id: str | None = None) -> DarajaError:
    """Rejection by M-Pesa behind the gateway: HTTP 500 ``500.001.1001``."""
    return DarajaError(500, "500.001.1001", message, request_id=request_id)


# Fixed errors. Each call returns a new instance: exceptions carry per-raise state (traceback),
# so one shared instance must not be raised from several request threads.
def invalid_auth_type() -> DarajaError:
    return DarajaError(400, "400.008.01", "Invalid Authentication passed")


def invalid_grant_type() -> DarajaError:
    return DarajaError(400, "400.008.02", "Invalid grant type passed")


def bad_client_credentials() -> DarajaError:
    return DarajaError(400, "", "", empty_body=True)


def invalid_access_token() -> DarajaError:
    return DarajaError(404, "404.001.03", "Invalid Access Token")


def invalid_auth_header() -> DarajaError:
    return DarajaError(404, "404.001.04", "Invalid Authentication Header")


def resource_not_found() -> DarajaError:
    return DarajaError(404, "404.001.01", "Resource not found")


def method_not_allowed() -> DarajaError:
    return DarajaError(405, "405.001", "Method Not Allowed")


def internal_error() -> DarajaError:
    return DarajaError(500, "500.003.1001", "Internal Server Error")


def callback_result_code(code: str) -> int | str:
    """Callback ResultCode is a JSON number, except non-numeric codes such as SFC_IC0003."""
    return int(code) if code.isascii() and code.isdigit() else code


def dumps_compact(value: Any) -> str:
    """Compact JSON, like the raw bodies Safaricom sends."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
