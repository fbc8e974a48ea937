"""How a gateway signs a batch and the centre checks it.

The signature is HMAC-SHA256 over the batch's bytes without the signature, and travels as the
batch's last field (number 15, 32 bytes): a gateway serializes the batch, computes the HMAC and
appends the field. The centre splits the field off the bytes it received, so it checks exactly
the bytes the gateway signed and never serializes anything again. A JSON batch (by MQTT) is
signed over the payload's bytes, the signature in hex beside it.

Each gateway's secret is derived from the service's key (WUYE_IOT_GATEWAY_KEY), the gateway's id
and its key version, so no secret is stored anywhere: rotating one gateway's secret is bumping
its version.
"""

from __future__ import annotations

import hmac

SIGNATURE_BYTES = 32
# Field 15, length-delimited ((15 << 3) | 2), then the length: 32.
_TRAILER = bytes([(15 << 3) | 2, SIGNATURE_BYTES])
_SIGNED_TAIL = len(_TRAILER) + SIGNATURE_BYTES


def signature_of(secret: bytes, payload: bytes) -> bytes:
    return hmac.digest(secret, payload, "sha256")


def sign(secret: bytes, batch: bytes) -> bytes:
    """The serialized batch (signature unset) with its signature field appended."""
    return batch + _TRAILER + signature_of(secret, batch)


def split_signature(raw: bytes) -> tuple[bytes, bytes]:
    """(signed bytes, signature) of a received batch; an empty signature if it has none last."""
    if len(raw) >= _SIGNED_TAIL and raw[-_SIGNED_TAIL:-SIGNATURE_BYTES] == _TRAILER:
        return raw[:-_SIGNED_TAIL], raw[-SIGNATURE_BYTES:]
    return raw, b""


def is_signed_by(secret: bytes, payload: bytes, signature: bytes) -> bool:
    return len(signature) == SIGNATURE_BYTES and hmac.compare_digest(
        signature_of(secret, payload), signature
    )


def gateway_secret(service_key: bytes, gateway_id: str, key_version: int) -> bytes:
    return hmac.digest(service_key, f"wuye-gateway:{gateway_id}:{key_version}".encode(), "sha256")
