"""Builds the token service from settings, creating a development secret when none is set."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from auth.jwks import JwksKeys
from auth.tokens import TokenConfig, TokenService
from server.settings import Settings

log = logging.getLogger(__name__)

DEV_SECRET_FILE = "jwt-secret"


def _pem(value: str | None) -> str | None:
    """A PEM given inline, or read from the file it names."""
    if value is None:
        return None
    if "-----BEGIN" in value:
        return value
    return Path(value).read_text(encoding="utf-8")


def dev_secret(data_dir: Path) -> str:
    """The development HS256 secret kept in the data folder (created once)."""
    path = data_dir / DEV_SECRET_FILE
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    path.touch(mode=0o600)
    path.write_text(secret + "\n", encoding="utf-8")
    return secret


def token_service(settings: Settings) -> TokenService:
    """HS256 with ``SESSIONHUB_JWT_SECRET`` (or a generated development secret), or RS256."""
    if settings.jwt_algorithm == "RS256":
        public = _pem(settings.jwt_public_key)
        if public is None:
            raise ValueError("SESSIONHUB_JWT_PUBLIC_KEY is required with RS256")
        verify_key, signing_key = public, _pem(settings.jwt_private_key)
    else:
        secret = settings.jwt_secret
        if not secret:
            secret = dev_secret(settings.data_dir)
            log.warning(
                "SESSIONHUB_JWT_SECRET is not set: using the development secret in %s; set it in production",
                settings.data_dir / DEV_SECRET_FILE,
            )
        verify_key = signing_key = secret
    jwks = None
    if settings.jwks_url:
        jwks = JwksKeys(
            settings.jwks_url,
            issuer=settings.jwks_issuer,
            audience=settings.jwks_audience,
            refresh_s=settings.jwks_refresh_s,
        )
    return TokenService(
        TokenConfig(
            algorithm=settings.jwt_algorithm,
            verify_key=verify_key,
            signing_key=signing_key,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            clock_skew_s=settings.jwt_clock_skew_s,
        ),
        jwks=jwks,
    )
