"""The passkey relying party (WebAuthn RP id and origin), from ``SESSIONHUB_PUBLIC_URL``."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

_OFF = "or set SESSIONHUB_PASSKEYS=false to run without passkeys"


@dataclass(frozen=True, slots=True)
class RelyingParty:
    """Where passkeys are valid: browsers bind each passkey to ``rp_id`` and check ``origin``."""

    rp_id: str
    origin: str
    name: str = "sessionhub"

    @classmethod
    def from_public_url(cls, url: str) -> RelyingParty:
        """The relying party of ``url``; ValueError (said at start) when browsers would refuse it."""
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if parts.scheme not in ("http", "https") or not host:
            raise ValueError(f"SESSIONHUB_PUBLIC_URL {url!r} is not an http(s) URL; passkeys need one, {_OFF}")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            raise ValueError(f"passkeys need a domain name in SESSIONHUB_PUBLIC_URL, not the address {host}; {_OFF}")
        local = host == "localhost" or host.endswith(".localhost")
        if parts.scheme != "https" and not local:
            raise ValueError(f"passkeys need https in SESSIONHUB_PUBLIC_URL (browsers refuse {url!r}); {_OFF}")
        return cls(rp_id=host, origin=f"{parts.scheme}://{parts.netloc}".lower())
