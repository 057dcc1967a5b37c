"""Webhook signatures, computed over the exact payload bytes that are sent.

`stripe`: the `Stripe-Signature` header `t=<unix time>,v1=<hex HMAC-SHA256(secret, "t.payload")>`,
which `stripe.Webhook.construct_event` accepts (it rejects timestamps older than 5 minutes, so a
signature is made per attempt, never once per run). `hmac-sha256`: the hex HMAC-SHA256 of the raw
body, as Razorpay-style receivers (QuickBite's `X-Razorpay-Signature`) check it.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable

from automation.errors import UserInputError

SCHEMES = ("stripe", "hmac-sha256")
DEFAULT_HEADERS = {"stripe": "Stripe-Signature", "hmac-sha256": "X-Razorpay-Signature"}

Signer = Callable[[bytes], dict[str, str]]


def hex_hmac(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def stripe_signature(secret: str, payload: bytes, timestamp: int) -> str:
    """The `Stripe-Signature` header value for `payload` signed at `timestamp`."""
    signed = str(timestamp).encode() + b"." + payload
    return f"t={timestamp},v1={hex_hmac(secret, signed)}"


def make_signer(
    scheme: str, secret: str, header: str | None = None, clock: Callable[[], float] = time.time
) -> Signer:
    """A function from payload bytes to the signature header(s) for one attempt."""
    if scheme not in SCHEMES:
        raise UserInputError(
            f"--signing {scheme!r}: unknown scheme; use one of {', '.join(SCHEMES)}"
        )
    if not secret:
        raise UserInputError("the webhook signing secret is empty: set it and rerun")
    name = header or DEFAULT_HEADERS[scheme]
    if scheme == "stripe":
        return lambda payload: {name: stripe_signature(secret, payload, int(clock()))}
    return lambda payload: {name: hex_hmac(secret, payload)}
