"""HTTP client for Daraja: OAuth (shared cached token), STK Push, STK Query.

The token lives in the shared cache (Redis in production) so every web and worker process
uses one token; it is refreshed before expiry by one process at a time (a cache lock), and
invalidated and retried once when Daraja answers ``404.001.03``. While the cache is
unreachable each process fetches and keeps its own token (one fetcher per process, a
thread lock), so STK Push keeps working through a Redis outage. Every call has a timeout.
Nothing here logs secrets: the passkey, consumer secret, password and tokens stay out of logs.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from django.conf import settings
from django.core.cache import BaseCache, cache

from core.degraded import degraded
from core.logging import ctx
from core.metrics import DARAJA_ERRORS, DARAJA_REQUESTS, code_label, count, observe
from core.phones import mask_phone

from .errors import (
    DarajaConfigurationError,
    DarajaError,
    DarajaInvalidTokenError,
    DarajaProtocolError,
    DarajaServerError,
    DarajaTransportError,
    DarajaUnreachableError,
    error_from_envelope,
)
from .parsing import NAIROBI, PayloadError, StkQueryResult, loads, parse_stk_query_response

logger = logging.getLogger(__name__)

PAYBILL = "CustomerPayBillOnline"
TILL = "CustomerBuyGoodsOnline"


def daraja_timestamp(now: datetime | None = None) -> str:
    """``YYYYMMDDHHmmss`` in Africa/Nairobi time, whatever the server's time zone."""
    moment = now.astimezone(NAIROBI) if now else datetime.now(NAIROBI)
    return moment.strftime("%Y%m%d%H%M%S")


def stk_password(shortcode: str, passkey: str, timestamp: str) -> str:
    """Base64 of shortcode + passkey + timestamp: plain concatenation, not a hash."""
    return base64.b64encode(f"{shortcode}{passkey}{timestamp}".encode()).decode()


@dataclass(frozen=True)
class StkPushAccepted:
    merchant_request_id: str
    checkout_request_id: str
    response_description: str
    customer_message: str


@dataclass(frozen=True)
class DarajaConfig:
    base_url: str
    consumer_key: str
    consumer_secret: str
    shortcode: str
    passkey: str
    transaction_type: str  # PAYBILL or TILL
    party_b: str
    connect_timeout: float
    read_timeout: float
    token_refresh_margin: int

    @classmethod
    def from_settings(cls) -> DarajaConfig:
        till = settings.MPESA_TRANSACTION_TYPE == "till"
        return cls(
            base_url=settings.MPESA_BASE_URL,
            consumer_key=settings.MPESA_CONSUMER_KEY,
            consumer_secret=settings.MPESA_CONSUMER_SECRET,
            shortcode=settings.MPESA_SHORTCODE,
            passkey=settings.MPESA_PASSKEY,
            transaction_type=TILL if till else PAYBILL,
            party_b=settings.MPESA_TILL_NUMBER if till else settings.MPESA_SHORTCODE,
            connect_timeout=settings.MPESA_CONNECT_TIMEOUT,
            read_timeout=settings.MPESA_READ_TIMEOUT,
            token_refresh_margin=settings.MPESA_TOKEN_REFRESH_MARGIN,
        )


class _CacheUnavailable(Exception):
    """The shared cache raised (Redis down): the cause is the cache's own error."""


class DarajaClient:
    def __init__(
        self,
        config: DarajaConfig,
        *,
        token_cache: BaseCache | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        self.config = config
        self.cache = token_cache or cache
        self.http = http or httpx.Client(
            base_url=config.base_url,
            timeout=httpx.Timeout(config.read_timeout, connect=config.connect_timeout),
            headers={"User-Agent": "mpesa-payments/0.1"},
        )
        scope = hashlib.sha256(f"{config.base_url}|{config.consumer_key}".encode()).hexdigest()[:16]
        self._token_key = f"daraja:token:{scope}"
        self._lock_key = f"daraja:token-lock:{scope}"
        # The process's own token, used while the shared cache is unreachable.
        self._local_lock = threading.Lock()
        self._local_token: tuple[str, float] | None = None

    # --- OAuth ------------------------------------------------------------------------
    def access_token(self) -> str:
        """A valid token from the shared cache, fetching a new one if needed (one fetcher).
        When the cache is unreachable, the process keeps its own token (one fetcher per
        process), so an outage of Redis is not an outage of STK Push."""
        try:
            return self._shared_token()
        except _CacheUnavailable as exc:
            degraded(
                "daraja_token",
                exc.__cause__ or exc,
                "token cache unreachable; using this process's own Daraja token",
            )
            return self._process_token()

    def _cache(self, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return getattr(self.cache, method)(*args, **kwargs)
        except Exception as exc:
            raise _CacheUnavailable(method) from exc

    def _shared_token(self) -> str:
        cached = self._cache("get", self._token_key)
        if cached:
            return str(cached)
        deadline = time.monotonic() + self.config.connect_timeout + self.config.read_timeout
        while True:
            if self._cache("add", self._lock_key, "1", timeout=30):
                try:
                    cached = self._cache("get", self._token_key)
                    if cached:
                        return str(cached)
                    token, lifetime = self._fetch_token()
                    try:
                        self._cache("set", self._token_key, token, timeout=lifetime)
                    except _CacheUnavailable:
                        self._keep_in_process(token, lifetime)
                    return token
                finally:
                    try:
                        self._cache("delete", self._lock_key)
                    except _CacheUnavailable:
                        pass  # the lock expires by itself
            # Another process is fetching: wait for its token rather than invalidating it.
            time.sleep(0.05)
            cached = self._cache("get", self._token_key)
            if cached:
                return str(cached)
            if time.monotonic() > deadline:
                raise DarajaTransportError("timed out waiting for another process's OAuth token")

    def _process_token(self) -> str:
        with self._local_lock:
            if self._local_token is not None and time.monotonic() < self._local_token[1]:
                return self._local_token[0]
            token, lifetime = self._fetch_token()
            self._keep_in_process(token, lifetime)
            return token

    def _keep_in_process(self, token: str, lifetime: int) -> None:
        self._local_token = (token, time.monotonic() + lifetime)

    def _fetch_token(self) -> tuple[str, int]:
        """A new token from Daraja, with how long to use it (seconds)."""
        basic = base64.b64encode(
            f"{self.config.consumer_key}:{self.config.consumer_secret}".encode()
        ).decode()
        response = self._send(
            "GET",
            "/oauth/v1/generate",
            params={"grant_type": "client_credentials"},
            headers={"Authorization": f"Basic {basic}"},
        )
        if response.status_code != 200:
            if not response.content.strip():
                # Production answers wrong or sandbox credentials with HTTP 400 and no body.
                raise DarajaConfigurationError(
                    "OAuth refused the consumer key/secret (empty answer); check "
                    "MPESA_CONSUMER_KEY, MPESA_CONSUMER_SECRET and MPESA_ENV",
                    http_status=response.status_code,
                )
            raise self._error(response)
        data = self._json(response)
        token = data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise DarajaProtocolError("OAuth answer has no access_token", http_status=200)
        try:
            # expires_in arrives as "3599" (string) or 3599 (number): read both.
            expires_in = int(str(data.get("expires_in", "3599")).strip())
        except ValueError:
            raise DarajaProtocolError("OAuth expires_in is not a number", http_status=200) from None
        logger.info("daraja token refreshed", extra=ctx(expires_in=expires_in))
        return token, max(expires_in - self.config.token_refresh_margin, 1)

    def invalidate_token(self, token: str) -> None:
        """Drop the cached token if it is still the one that failed (not a newer one)."""
        with self._local_lock:
            if self._local_token is not None and self._local_token[0] == token:
                self._local_token = None
        try:
            if self._cache("get", self._token_key) == token:
                self._cache("delete", self._token_key)
        except _CacheUnavailable:
            pass  # the next access_token fetches its own

    # --- Business APIs ----------------------------------------------------------------
    def stk_push(
        self,
        *,
        phone_number: str,
        amount: Decimal,
        account_reference: str,
        description: str,
        callback_url: str,
    ) -> StkPushAccepted:
        timestamp = daraja_timestamp()
        payload = {
            "BusinessShortCode": self.config.shortcode,
            "Password": stk_password(self.config.shortcode, self.config.passkey, timestamp),
            "Timestamp": timestamp,
            "TransactionType": self.config.transaction_type,
            "Amount": int(amount),
            "PartyA": phone_number,
            "PartyB": self.config.party_b,
            "PhoneNumber": phone_number,
            "CallBackURL": callback_url,
            "AccountReference": account_reference,
            "TransactionDesc": description,
        }
        logger.info(
            "daraja stk push",
            extra=ctx(phone=mask_phone(phone_number), amount=str(amount)),
        )
        data = self._post_json("/mpesa/stkpush/v1/processrequest", payload)
        if not isinstance(data, dict):
            raise DarajaProtocolError("STK Push answer is not a JSON object")
        response_code = str(data.get("ResponseCode", "")).strip()
        checkout_request_id = data.get("CheckoutRequestID")
        if response_code and set(response_code) == {"0"} and isinstance(checkout_request_id, str):
            return StkPushAccepted(
                merchant_request_id=str(data.get("MerchantRequestID", "")),
                checkout_request_id=checkout_request_id,
                response_description=str(data.get("ResponseDescription", "")),
                customer_message=str(data.get("CustomerMessage", "")),
            )
        raise DarajaProtocolError(
            f"STK Push not accepted: ResponseCode {response_code or 'missing'} "
            f"{data.get('ResponseDescription', '')}".strip()
        )

    def stk_query(self, *, checkout_request_id: str) -> StkQueryResult:
        """Ask for an STK Push's outcome. Raises DarajaPendingError for the HTTP-500 pending
        answer; returns ``pending=True`` for the HTTP-200 ``4999`` answer."""
        timestamp = daraja_timestamp()
        payload = {
            "BusinessShortCode": self.config.shortcode,
            "Password": stk_password(self.config.shortcode, self.config.passkey, timestamp),
            "Timestamp": timestamp,
            "CheckoutRequestID": checkout_request_id,
        }
        data = self._post_json("/mpesa/stkpushquery/v1/query", payload)
        try:
            return parse_stk_query_response(data)
        except PayloadError as exc:
            raise DarajaProtocolError(f"STK Query answer: {exc}") from None

    def c2b_register_url(
        self,
        *,
        shortcode: str,
        response_type: str,
        confirmation_url: str,
        validation_url: str,
        version: str = "v2",
    ) -> str:
        """Register a shortcode's C2B URLs (``version`` must match the C2B product of the
        Daraja app). Returns Daraja's description; raises DarajaError otherwise."""
        if version not in ("v1", "v2"):
            raise ValueError("version must be v1 or v2")
        data = self._post_json(
            f"/mpesa/c2b/{version}/registerurl",
            {
                "ShortCode": shortcode,
                "ResponseType": response_type,
                "ConfirmationURL": confirmation_url,
                "ValidationURL": validation_url,
            },
        )
        return _accepted(data, "C2B Register URL")

    def c2b_simulate(
        self, *, shortcode: str, amount: Decimal, msisdn: str, bill_ref: str, till: bool = False
    ) -> str:
        """Sandbox (and simulator) only: a customer paying the paybill or till."""
        payload: dict[str, Any] = {
            "ShortCode": shortcode,
            "CommandID": "CustomerBuyGoodsOnline" if till else "CustomerPayBillOnline",
            "Amount": int(amount),
            "Msisdn": msisdn,
            "BillRefNumber": None if till else bill_ref,
        }
        return _accepted(self._post_json("/mpesa/c2b/v2/simulate", payload), "C2B simulate")

    def pull_register(self, *, shortcode: str, nominated_number: str, callback_url: str) -> str:
        """Register the shortcode for Pull Transactions (once). Returns Daraja's status:
        ``1000`` registered, ``1001`` already registered."""
        data = self._post_json(
            "/pulltransactions/v1/register",
            {
                "ShortCode": shortcode,
                "RequestType": "Pull",
                "NominatedNumber": nominated_number,
                "CallBackURL": callback_url,
            },
        )
        if not isinstance(data, dict):
            raise DarajaProtocolError("Pull register answer is not a JSON object")
        keys = {str(key).replace(" ", "").lower(): value for key, value in data.items()}
        status = str(keys.get("responsestatus", keys.get("responsecode", ""))).strip()
        if status in ("1000", "1001", "0"):
            return status
        raise DarajaProtocolError(
            f"Pull register not accepted: {status or 'no status'} "
            f"{keys.get('responsedescription', '')}".strip()
        )

    def pull_query(self, *, shortcode: str, start: datetime, end: datetime, offset: int) -> Any:
        """One page of the shortcode's transactions between ``start`` and ``end`` (within the
        last 48 hours; sent in East Africa Time), from row ``offset``: the response as sent
        (read it with ``daraja.pull.page_transactions``)."""
        return self._post_json(
            "/pulltransactions/v1/query",
            {
                "ShortCode": shortcode,
                "StartDate": start.astimezone(NAIROBI).strftime("%Y-%m-%d %H:%M:%S"),
                # Whole seconds: the end rounded up, so nothing of its last second is left out.
                "EndDate": (end + timedelta(microseconds=999_999))
                .astimezone(NAIROBI)
                .strftime("%Y-%m-%d %H:%M:%S"),
                "OffSetValue": str(offset),
            },
        )

    # --- plumbing ---------------------------------------------------------------------
    def _post_json(self, path: str, payload: dict[str, Any]) -> Any:
        for attempt in (1, 2):
            token = self.access_token()
            response = self._send(
                "POST", path, json=payload, headers={"Authorization": f"Bearer {token}"}
            )
            if response.status_code == 200:
                return self._json(response)
            error = self._error(response)
            if isinstance(error, DarajaInvalidTokenError) and attempt == 1:
                logger.warning("daraja token rejected; refreshing once", extra=ctx(path=path))
                self.invalidate_token(token)
                continue
            raise error
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        started = time.perf_counter()
        outcome = "error"
        try:
            response = self.http.request(method, path, **kwargs)
            outcome = str(response.status_code)
            return response
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            outcome = "unreachable"
            # Raised before a byte of the request left: Daraja cannot have acted on it.
            raise DarajaUnreachableError(
                f"could not connect to Daraja at {self.config.base_url} ({type(exc).__name__})"
            ) from None
        except httpx.TimeoutException as exc:
            outcome = "timeout"
            raise DarajaTransportError(
                f"Daraja did not answer in time ({type(exc).__name__})"
            ) from None
        except httpx.HTTPError as exc:
            raise DarajaTransportError(f"could not reach Daraja ({type(exc).__name__})") from None
        finally:
            observe(
                DARAJA_REQUESTS,
                time.perf_counter() - started,
                endpoint=path.split("?", 1)[0],
                outcome=outcome,
            )

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        try:
            return loads(response.content)
        except PayloadError:
            raise DarajaProtocolError(
                "Daraja answered with a body that is not JSON", http_status=response.status_code
            ) from None

    def _error(self, response: httpx.Response) -> DarajaError:
        try:
            data = loads(response.content)
        except PayloadError:
            data = None
        code = str(data.get("errorCode", "")) if isinstance(data, dict) else ""
        try:
            endpoint = response.request.url.path
        except RuntimeError:  # a response built without its request
            endpoint = "-"
        count(DARAJA_ERRORS, endpoint=endpoint, error_code=code_label(code))
        if isinstance(data, dict) and "errorCode" in data:
            return error_from_envelope(
                http_status=response.status_code,
                error_code=str(data.get("errorCode", "")),
                message=str(data.get("errorMessage", "")),
                request_id=str(data.get("requestId", "")),
            )
        if response.status_code >= 500:
            return DarajaServerError(
                "Daraja failed without an error body", http_status=response.status_code
            )
        return DarajaProtocolError(
            "Daraja answered an error without an error envelope", http_status=response.status_code
        )


def _accepted(data: Any, what: str) -> str:
    """``ResponseCode`` ``"0"`` (or ``"00000000"``, 2026 sandbox): Daraja's description."""
    if not isinstance(data, dict):
        raise DarajaProtocolError(f"{what} answer is not a JSON object")
    code = str(data.get("ResponseCode", "")).strip()
    if code and set(code) == {"0"}:
        return str(data.get("ResponseDescription", ""))
    raise DarajaProtocolError(
        f"{what} not accepted: ResponseCode {code or 'missing'} "
        f"{data.get('ResponseDescription', '')}".strip()
    )


_client_lock = threading.Lock()
_client: DarajaClient | None = None
_client_config: DarajaConfig | None = None


def get_client() -> DarajaClient:
    """The process's client (one HTTP connection pool), rebuilt if settings changed."""
    global _client, _client_config
    config = DarajaConfig.from_settings()
    with _client_lock:
        if _client is None or _client_config != config:
            _client = DarajaClient(config)
            _client_config = config
        return _client
