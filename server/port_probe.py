"""Whether ``serve`` could listen where it is asked to, found before anything starts.

The site binds only after the embedded Redis, the services and the app are up, so a port in use
was refused after the embedded Redis's start-up lines: three lines where README promises one.
A trial bind of every address the host resolves to, the way the site will bind it
(``SO_REUSEADDR``, IPv6 sockets IPv6-only), refuses first. It proves nothing for later: another
process may take the port between the trial and the site, whose own refusal then still stands.
"""

from __future__ import annotations

import socket


def refusal(host: str, port: int) -> str | None:
    """Why ``host``:``port`` cannot be listened on now (``None`` when it can, or when only the
    real bind can tell: port 0, a name that does not resolve yet)."""
    if port == 0:
        return None  # any free port: nothing to be in use
    try:
        addresses = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError):
        return None  # the site's own bind says why, in the same words as before
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                return f"cannot listen on {host}:{port}: {(exc.strerror or str(exc)).lower()}"
    return None
