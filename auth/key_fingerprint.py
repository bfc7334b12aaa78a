"""A fingerprint of how a node verifies access tokens, to compare nodes by.

Every node of one deployment must verify with the same key, algorithm, issuer and audience: a
token one node mints is otherwise refused by the next (`401 invalid token`), and a browser moving
between them renews its token on every request (the refresh cookie lives in Redis, so each node
mints a new one the other refuses: 16 rotations a second, audit "multinode"). Two nodes started
without ``SESSIONHUB_JWT_SECRET`` on different data folders each made their own development
secret, which is the same mistake.

A node's heartbeat carries its fingerprint, and ``/admin/alerts`` says when live nodes differ.
An HS256 secret is stretched (PBKDF2) before it is hashed, so that what Redis holds is of no use
to guess a weak secret by; a public key needs no such care.
"""

from __future__ import annotations

import hashlib

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from auth.jwks import JwksKeys
from auth.tokens import TokenConfig

# Enough to make guessing a weak secret from the fingerprint slow (each guess costs this many
# HMACs), cheap enough for once per process (about 10 ms).
SECRET_ROUNDS = 20_000
_SALT = b"sessionhub:token-key-fingerprint:v1"


def _public_key_der(pem: bytes) -> bytes:
    """The public key itself (SubjectPublicKeyInfo, DER), whatever PEM form it came in: the same
    RSA key as ``BEGIN PUBLIC KEY`` on one node and ``BEGIN RSA PUBLIC KEY`` on another verifies
    the same tokens (the text's hash said they differ: audit verify39). A text that is no key
    PyJWT's cryptography reads is hashed as it is, line breaks aside."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return b"".join(pem.split())
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def fingerprint(config: TokenConfig, jwks: JwksKeys | None = None) -> str:
    """16 hex characters, the same for two nodes exactly when they verify the same tokens: their
    own (``config``) and an external provider's (``jwks``: where its keys come from, its issuer
    and audience; a node that takes them beside one that does not refuses what the other takes)."""
    key = config.verify_key.encode()
    if config.algorithm.startswith("HS"):
        key_digest = hashlib.pbkdf2_hmac("sha256", key, _SALT, SECRET_ROUNDS)
    else:
        key_digest = hashlib.sha256(_public_key_der(key)).digest()
    external = (jwks.url, jwks.issuer or "", jwks.audience or "") if jwks is not None else ("", "", "")
    described = "\0".join((config.algorithm, config.issuer or "", config.audience or "", *external)).encode()
    return hashlib.sha256(described + b"\0" + key_digest).hexdigest()[:16]
