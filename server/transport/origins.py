"""Socket.IO's same-origin check, one for both lanes.

Engine.IO's own (``cors_allowed_origins=None``) allows ``<wsgi.url_scheme>://<Host>`` and,
when the request carries either header, ``<first X-Forwarded-Proto>://<first
X-Forwarded-Host>``: both raw, whoever wrote them (its aiohttp driver copies the raw
``X-Forwarded-Proto`` into ``wsgi.url_scheme`` too). A client could thus name any origin as this
server's own. :class:`SameOrigin` is handed to Engine.IO as ``cors_allowed_origins`` (its
documented callable form, ``(origin, environ) -> bool``), so both lanes ask it, at a WebSocket
open read by ``server.transport.front`` as on every request aiohttp routes.
"""

from __future__ import annotations

from typing import Any

from handlers.http_common import forwarded_host, forwarded_scheme


class SameOrigin:
    """Whether an ``Origin`` is this server's own, as the request's ``Host`` and the trusted
    proxies (``forwarded_hops`` of them, 0 for none) name it."""

    def __init__(self, forwarded_hops: int) -> None:
        self.forwarded_hops = forwarded_hops

    def __call__(self, origin: str | None, environ: dict[str, Any]) -> bool:
        return origin is not None and origin in self.allowed(environ)

    def allowed(self, environ: dict[str, Any]) -> tuple[str, ...]:
        """The origins of this server for a request's WSGI ``environ``.

        Behind trusted proxies: the scheme they say (``http`` or ``https``, at their hop) with
        the ``Host`` and with the host they name (``X-Forwarded-Host``, one valid host[:port] at
        the same hop). With none, ``Host`` over either scheme: a TLS-terminating proxy in front
        that nobody declared still serves the pages from ``https://<Host>`` (refusing them broke
        every such install), and the same host over the other scheme is no other site; neither
        header is read then, being the client's word.
        """
        host = environ.get("HTTP_HOST")
        if not host:
            return ()
        if not self.forwarded_hops:
            return f"http://{host}", f"https://{host}"
        scheme = forwarded_scheme(environ.get("HTTP_X_FORWARDED_PROTO", ""), self.forwarded_hops)
        named = forwarded_host(environ.get("HTTP_X_FORWARDED_HOST", ""), self.forwarded_hops)
        if named is None or named == host:
            return (f"{scheme}://{host}",)
        return f"{scheme}://{host}", f"{scheme}://{named}"
