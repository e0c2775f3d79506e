// Verify sessiongate's X-Auth-Assertion in a Node.js app (docs/production.md), with Node's own
// crypto (Node 18 or later; no package needed).
//
// The gateway signs every request it forwards with an EdDSA (Ed25519) JWT in X-Auth-Assertion
// when keys.assertion_key_file is set; its public keys are at {public_origin}/.auth/jwks.json.
//
//   import { AssertionVerifier } from './verify-assertion.mjs';
//   const verifier = new AssertionVerifier('https://sso.example.com/.auth/jwks.json',
//     { audience: 'upstream', issuer: 'https://sso.example.com' });
//   const claims = await verifier.verify(req.headers['x-auth-assertion']); // throws on any fault
//
// As a command (the e2e tests run it): node verify-assertion.mjs JWKS_URL AUDIENCE ISSUER < token
// prints the claims as JSON and exits 0, or prints why not and exits 1.

import { createPublicKey, verify } from 'node:crypto';
import { fileURLToPath } from 'node:url';

export class AssertionVerifier {
  constructor(jwksUrl, { audience, issuer }) {
    this.jwksUrl = jwksUrl;
    this.audience = audience; // keys.assertion_audience
    this.issuer = issuer; // server.public_origin
    this.keys = new Map();
  }

  // Fetch the JWKS again when a token names a kid not seen yet (a key rotation).
  async key(kid) {
    if (!this.keys.has(kid)) {
      const res = await fetch(this.jwksUrl);
      if (!res.ok) throw new Error(`JWKS: ${res.status}`);
      for (const jwk of (await res.json()).keys) {
        if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519') {
          this.keys.set(jwk.kid, createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: jwk.x }, format: 'jwk' }));
        }
      }
    }
    const key = this.keys.get(kid);
    if (!key) throw new Error(`no key ${kid} in the JWKS`);
    return key;
  }

  async verify(token, now = Math.floor(Date.now() / 1000)) {
    const parts = String(token).split('.');
    if (parts.length !== 3) throw new Error('not a JWT');
    const [head, body, signature] = parts;
    const header = JSON.parse(Buffer.from(head, 'base64url'));
    if (header.alg !== 'EdDSA') throw new Error(`algorithm ${header.alg}`); // pinned
    const signed = Buffer.from(`${head}.${body}`);
    if (!verify(null, signed, await this.key(header.kid), Buffer.from(signature, 'base64url'))) {
      throw new Error('bad signature');
    }
    const claims = JSON.parse(Buffer.from(body, 'base64url'));
    for (const c of ['exp', 'iat', 'sub', 'aud', 'iss']) {
      if (claims[c] === undefined) throw new Error(`no ${c}`);
    }
    if (!(typeof claims.exp === 'number' && claims.exp > now)) throw new Error('expired');
    if (!(typeof claims.iat === 'number' && claims.iat <= now + 60)) throw new Error('issued in the future');
    const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
    if (!aud.includes(this.audience)) throw new Error(`audience ${claims.aud}`);
    if (claims.iss !== this.issuer) throw new Error(`issuer ${claims.iss}`);
    return claims;
  }
}

async function main([jwksUrl, audience, issuer]) {
  if (!issuer) {
    console.error('usage: node verify-assertion.mjs JWKS_URL AUDIENCE ISSUER < token');
    return 2;
  }
  let token = '';
  for await (const chunk of process.stdin) token += chunk;
  try {
    const claims = await new AssertionVerifier(jwksUrl, { audience, issuer }).verify(token.trim());
    console.log(JSON.stringify(claims));
    return 0;
  } catch (e) {
    console.error(`refused: ${e.message}`);
    return 1;
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  process.exitCode = await main(process.argv.slice(2));
}
