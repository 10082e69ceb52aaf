"""Signed webhooks: how `dte worker` reports results and how a receiver (the Odoo addon's
controllers) checks them.

The signature is HMAC-SHA256 with a shared secret over ``"<timestamp>.<body>"``, where the
timestamp is Unix seconds sent in ``X-DTE-Timestamp`` and the signature is sent as
``X-DTE-Signature: sha256=<hex>``. A receiver rejects a missing or malformed header, a timestamp
outside the replay window (default 300 s either way), a signature that does not match (compared
in constant time), and, when it keeps a :class:`ReplayGuard`, a signature it has already seen.
Every rejection is a :class:`WebhookError` with a stable ``code`` and, as ``status``, the HTTP
status to answer.

    >>> secret = b"s3cret"
    >>> sig = sign(secret, b'{"a":1}', 1700000000)
    >>> verify(secret, b'{"a":1}', "1700000000", sig, now=1700000010)
    1700000000
"""
from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from typing import Any, Callable, Mapping

from .errors import DteError

__all__ = [
    "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "EVENT_HEADER", "DELIVERY_HEADER", "DEFAULT_WINDOW_S",
    "WebhookError", "WebhookSignatureError", "WebhookReplayError", "ReplayGuard", "signature", "sign",
    "signed_headers", "verify", "verify_headers", "post", "read_secret",
]

SIGNATURE_HEADER = "X-DTE-Signature"
TIMESTAMP_HEADER = "X-DTE-Timestamp"
EVENT_HEADER = "X-DTE-Event"        # status_update | error_alert | sii_change
DELIVERY_HEADER = "X-DTE-Delivery"  # unique per event: receivers handle each delivery once
DEFAULT_WINDOW_S = 300


class WebhookError(DteError, ValueError):
    """A webhook request that must be refused because it is malformed (HTTP 400): codes
    ``webhook.missing_timestamp``, ``webhook.malformed_timestamp``, ``webhook.no_secret``."""

    status = 400


class WebhookSignatureError(WebhookError):
    """Missing or wrong signature (HTTP 401): ``webhook.missing_signature``,
    ``webhook.bad_signature``."""

    status = 401


class WebhookReplayError(WebhookError):
    """Outside the replay window or already seen (HTTP 401): ``webhook.stale_timestamp``,
    ``webhook.replayed``."""

    status = 401


def _key(secret: bytes | str) -> bytes:
    key = secret.encode() if isinstance(secret, str) else bytes(secret)
    if not key:
        raise WebhookError("the webhook secret is empty", "webhook.no_secret")
    return key


def signature(secret: bytes | str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``"<timestamp>.<body>"``."""
    return hmac.new(_key(secret), str(int(timestamp)).encode() + b"." + body, hashlib.sha256).hexdigest()


def sign(secret: bytes | str, body: bytes, timestamp: int | None = None) -> str:
    """The ``X-DTE-Signature`` value for ``body`` sent at ``timestamp`` (default now):
    ``"sha256=<hex>"``."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    return "sha256=" + signature(secret, ts, body)


def signed_headers(secret: bytes | str, body: bytes, *, timestamp: int | None = None, event: str = "",
                   delivery: str = "") -> dict[str, str]:
    """Every header to send with ``body`` (timestamp, signature, and event/delivery when given)."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    headers = {TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: sign(secret, body, ts)}
    if event:
        headers[EVENT_HEADER] = event
    if delivery:
        headers[DELIVERY_HEADER] = delivery
    return headers


class ReplayGuard:
    """Remembers the signatures seen within the replay window (thread-safe, in memory). A
    receiver with several processes keeps this state in its database instead (the body's
    ``event_id`` makes handling idempotent)."""

    def __init__(self, window_s: int = DEFAULT_WINDOW_S) -> None:
        self.window_s = window_s
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def seen(self, sig: str, now: float | None = None) -> bool:
        """True if ``sig`` was already seen; records it otherwise."""
        t = time.time() if now is None else now
        with self._lock:
            for k in [k for k, exp in self._seen.items() if exp < t]:
                del self._seen[k]
            if sig in self._seen:
                return True
            self._seen[sig] = t + 2 * self.window_s
            return False


def verify(secret: bytes | str, body: bytes, timestamp: str | int | None, signature_header: str | None, *,
           window: int = DEFAULT_WINDOW_S, now: float | None = None,
           replay: ReplayGuard | Callable[[str], bool] | None = None) -> int:
    """Checks a received webhook from its ``X-DTE-Timestamp`` and ``X-DTE-Signature`` header
    values; returns the timestamp or raises :class:`WebhookError` (400: missing or malformed
    timestamp), :class:`WebhookSignatureError` (401: missing or wrong signature) or
    :class:`WebhookReplayError` (401: outside the window of ``window`` seconds either way, or,
    with ``replay``, already seen)."""
    if timestamp is None or str(timestamp).strip() == "":
        raise WebhookError(f"missing {TIMESTAMP_HEADER} header", "webhook.missing_timestamp")
    text = str(timestamp).strip()
    if not text.isdigit() or len(text) > 12:
        raise WebhookError(f"{TIMESTAMP_HEADER} is not a Unix timestamp", "webhook.malformed_timestamp")
    ts = int(text)
    if not signature_header or not str(signature_header).strip():
        raise WebhookSignatureError(f"missing {SIGNATURE_HEADER} header", "webhook.missing_signature")
    t = time.time() if now is None else now
    if abs(t - ts) > window:
        raise WebhookReplayError(f"timestamp outside the {window} s replay window", "webhook.stale_timestamp")
    given = str(signature_header).strip()
    if given.startswith("sha256="):
        given = given[len("sha256="):]
    expected = signature(secret, ts, body)
    if not hmac.compare_digest(expected.encode(), given.encode("ascii", "replace")):
        raise WebhookSignatureError("signature does not match", "webhook.bad_signature")
    if replay is not None:
        seen = replay.seen(expected) if isinstance(replay, ReplayGuard) else replay(expected)
        if seen:
            raise WebhookReplayError("this webhook was already delivered", "webhook.replayed")
    return ts


def verify_headers(secret: bytes | str, body: bytes, headers: Mapping[str, str], **kw: Any) -> int:
    """:func:`verify` with the headers of a request (names matched case-insensitively)."""
    lower = {k.lower(): v for k, v in headers.items()}
    return verify(secret, body, lower.get(TIMESTAMP_HEADER.lower()), lower.get(SIGNATURE_HEADER.lower()), **kw)


def post(url: str, secret: bytes | str, event: str, payload: Mapping[str, Any], *,
         delivery: str = "", timeout_s: float = 10.0, attempts: int = 3,
         backoff_s: float = 0.5) -> int:
    """POSTs ``payload`` as JSON, signed; retries on network errors and 5xx. Returns the final
    HTTP status (0 when the receiver was never reached)."""
    body = json.dumps(payload, ensure_ascii=False, sort_keys=True).encode("utf-8")
    delivery = delivery or str(uuid.uuid4())
    status = 0
    for attempt in range(1, max(1, attempts) + 1):
        headers = {"Content-Type": "application/json",
                   **signed_headers(secret, body, event=event, delivery=delivery)}
        req = urllib.request.Request(url, data=body, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as e:
            status = int(e.code)
            if status < 500:
                return status
        except (urllib.error.URLError, OSError):
            status = 0
        if attempt < attempts:
            time.sleep(backoff_s * 2 ** (attempt - 1))
    return status


def read_secret(path: str) -> bytes:
    """The secret in a file (surrounding whitespace removed); never logged."""
    try:
        with open(path, "rb") as fh:
            key = fh.read().strip()
    except OSError as e:
        raise WebhookError(f"cannot read webhook secret file {path}: {e.strerror or e}",
                           "webhook.no_secret") from None
    if not key:
        raise WebhookError(f"webhook secret file {path} is empty", "webhook.no_secret")
    return key
