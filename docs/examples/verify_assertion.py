#!/usr/bin/env python3
"""Verify sessiongate's X-Auth-Assertion in a Python app (docs/production.md).

The gateway signs every request it forwards with an EdDSA (Ed25519) JWT in X-Auth-Assertion
when keys.assertion_key_file is set; its public keys are at {public_origin}/.auth/jwks.json.
An app that verifies it trusts the identity only from the gateway, whoever else can reach it.

Needs PyJWT with cryptography: `pip install "pyjwt[crypto]"` (or Debian's python3-jwt).

    verifier = AssertionVerifier("https://sso.example.com/.auth/jwks.json",
                                 audience="upstream", issuer="https://sso.example.com")
    claims = verifier.verify(request.headers["X-Auth-Assertion"])   # raises on any fault
    user, roles = claims["sub"], claims["roles"]

As a command (the e2e tests run it): verify_assertion.py JWKS_URL AUDIENCE ISSUER < token
prints the claims as JSON and exits 0, or prints why not and exits 1.
"""

import json
import sys

import jwt


class AssertionVerifier:
    def __init__(self, jwks_url, audience, issuer):
        # Fetches the JWKS and keeps it; a token naming an unknown kid (a key rotation) makes
        # it fetch again. keys.assertion_previous_key_file keeps the old key published.
        self.jwks = jwt.PyJWKClient(jwks_url, cache_keys=True)
        self.audience = audience
        self.issuer = issuer

    def verify(self, token):
        key = self.jwks.get_signing_key_from_jwt(token)
        return jwt.decode(
            token,
            key.key,
            algorithms=["EdDSA"],  # pinned: never the algorithm the token names
            audience=self.audience,  # keys.assertion_audience
            issuer=self.issuer,  # server.public_origin
            options={"require": ["exp", "iat", "sub", "aud", "iss"]},
        )


def main():
    if len(sys.argv) != 4:
        print(__doc__.strip().splitlines()[-2], file=sys.stderr)
        return 2
    jwks_url, audience, issuer = sys.argv[1:]
    token = sys.stdin.read().strip()
    try:
        claims = AssertionVerifier(jwks_url, audience, issuer).verify(token)
    except jwt.PyJWTError as e:
        print(f"refused: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(json.dumps(claims, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
