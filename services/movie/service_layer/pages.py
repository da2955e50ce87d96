"""Page tokens (AIP-158): opaque to callers, the sort key of the last item of the page inside."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from services.kit.errors import InvalidArgument


def encode(*key: Any) -> str:
    raw = json.dumps(list(key), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(token: str, arity: int) -> list[Any] | None:
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        key = json.loads(raw)
    except (binascii.Error, ValueError):
        raise InvalidArgument.for_field("page_token", "is not a token of this list") from None
    if not isinstance(key, list) or len(key) != arity or not all(isinstance(k, str) for k in key):
        raise InvalidArgument.for_field("page_token", "is not a token of this list")
    return key


def page_size(requested: int, default: int, maximum: int = 100) -> int:
    if requested < 0:
        raise InvalidArgument.for_field("page_size", "must not be negative")
    return min(requested or default, maximum)
