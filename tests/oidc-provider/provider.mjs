// A real OpenID provider for sessiongate's end-to-end tests: panva's certified `oidc-provider`,
// served over HTTPS on loopback, configured and steered by the test through a plain-HTTP control
// listener. Started by tests/e2e/support/oidc.rs; nothing here is for production.
//
//   node provider.mjs CERT.pem KEY.pem
//     -> ready issuer=https://127.0.0.1:PORT control=http://127.0.0.1:PORT2
//
// Two phases, because the gateway's URL and CA exist only once the issuer is known:
//   1. start: both listeners bound on 127.0.0.1:0, the ready line printed; the issuer answers
//      503 until configured.
//   2. POST control /configure builds the Provider and starts serving.
//
// Control endpoints (JSON in, JSON out): /configure, /tamper, /logout-token, /rotate-keys,
// /users/:sub (POST, DELETE), /backchannel-deliveries (GET), /end-sessions. What each does is
// said above its handler below. The provider itself stays the real one: the control listener
// only changes its configuration (clients, users, keys), ends sessions through the provider's
// own back-channel code, and (`/tamper`) alters ID tokens after the token endpoint made them, to
// test what the relying party does with a bad one.
//
// The process stops by itself when its standard input closes or its parent process dies.

import dns from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';

import * as jose from 'jose';
import Provider, { errors } from 'oidc-provider';

const [certPath, keyPath] = process.argv.slice(2);
if (!certPath || !keyPath) {
  process.stderr.write('usage: node provider.mjs CERT.pem KEY.pem\n');
  process.exit(2);
}

// ---------------------------------------------------------------- stop with the parent

process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
const parentPid = process.ppid;
setInterval(() => {
  if (process.ppid !== parentPid) process.exit(0);
}, 500).unref();

const log = (...args) => process.stderr.write(`oidc-provider-e2e: ${args.join(' ')}\n`);

// ---------------------------------------------------------------- state

/** Everything that outlives one Provider instance (a key rotation builds a new one). */
const state = {
  issuer: '',
  provider: null,
  handler: null,
  clients: [],
  users: new Map(),
  ttl: {},
  trustCa: undefined,
  /** Signing keys, the first one signs: `{ jwk (private), kid }`. */
  keys: [],
  /** A key that is in no JWKS, for `foreign_key` tokens. */
  foreign: null,
  tamper: { mode: 'none' },
  deliveries: [],
  /** Keys for the provider's signed cookies, kept across rebuilds so sessions survive them. */
  cookieKeys: [randomBytes(32).toString('base64url')],
};

const MAX_DELIVERIES = 1000;
const MAX_BODY = 256 * 1024;

async function newSigningKey(prefix) {
  const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
  const jwk = await jose.exportJWK(privateKey);
  const kid = `${prefix}-${randomBytes(6).toString('base64url')}`;
  Object.assign(jwk, { kid, alg: 'RS256', use: 'sig' });
  return { jwk, kid };
}

// ---------------------------------------------------------------- storage

/**
 * The provider's storage (sessions, grants, codes, tokens, interactions): one Map shared by
 * every Provider this process builds, so a key rotation keeps sessions and tokens, and so
 * `/end-sessions` can find a user's sessions. Entries expire as the provider says; expired
 * ones are swept as new ones come.
 */
const store = new Map();
let upserts = 0;

function sweep() {
  const now = Date.now();
  for (const [key, entry] of store) {
    if (entry.expiresAt <= now) store.delete(key);
  }
}

class StoreAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    upserts += 1;
    if (upserts % 500 === 0) sweep();
    const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : Infinity;
    store.set(this.key(id), { model: this.model, payload, expiresAt });
  }

  async find(id) {
    const entry = store.get(this.key(id));
    if (!entry) return undefined;
    if (entry.expiresAt <= Date.now()) {
      store.delete(this.key(id));
      return undefined;
    }
    return entry.payload;
  }

  async findBy(field, value) {
    for (const [key, entry] of store) {
      if (entry.model === this.model && entry.payload[field] === value
        && entry.expiresAt > Date.now()) {
        return this.find(key.slice(this.model.length + 1));
      }
    }
    return undefined;
  }

  async findByUid(uid) {
    return this.findBy('uid', uid);
  }

  async findByUserCode(userCode) {
    return this.findBy('userCode', userCode);
  }

  async consume(id) {
    const entry = store.get(this.key(id));
    if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    store.delete(this.key(id));
  }

  async revokeByGrantId(grantId) {
    for (const [key, entry] of store) {
      if (entry.model === this.model && entry.payload.grantId === grantId) store.delete(key);
    }
  }
}

/** Every stored, unexpired session of `sub`: `{ id, payload }`. */
function sessionsOf(sub) {
  const now = Date.now();
  const found = [];
  for (const [key, entry] of store) {
    if (entry.model === 'Session' && entry.payload.accountId === sub && entry.expiresAt > now) {
      found.push({ id: key.slice('Session:'.length), payload: entry.payload });
    }
  }
  return found;
}

function revokeGrant(grantId) {
  for (const [key, entry] of store) {
    if (key === `Grant:${grantId}` || entry.payload.grantId === grantId) {
      store.delete(key);
    }
  }
}

// ---------------------------------------------------------------- outgoing requests

/** `localhost` is the gateway on this machine: resolve it to 127.0.0.1 for back-channel POSTs. */
function loopbackLookup(hostname, options, callback) {
  if (hostname !== 'localhost') {
    dns.lookup(hostname, options, callback);
    return;
  }
  if (options && options.all) {
    callback(null, [{ address: '127.0.0.1', family: 4 }]);
  } else {
    callback(null, '127.0.0.1', 4);
  }
}

/**
 * oidc-provider's `fetch` hook (used here only for back-channel logout POSTs): node's https with
 * the CA the test gave (`trust_ca_pem`) and `localhost` resolved to loopback. oidc-provider's
 * own dispatcher refuses loopback addresses (SSRF protection), which is right in production and
 * exactly what a loopback test cannot have, so its `dispatcher` option is not used. Every
 * attempt is recorded for `/backchannel-deliveries`.
 */
function backchannelFetch(url, options) {
  const target = new URL(url);
  const body = options.body == null ? null : Buffer.from(String(options.body));
  const headers = {};
  for (const [k, v] of new Headers(options.headers ?? {})) headers[k] = v;
  if (body) headers['content-length'] = String(body.length);
  const delivery = {
    uri: target.href,
    method: options.method ?? 'GET',
    logout_token: body ? new URLSearchParams(body.toString()).get('logout_token') : null,
    status: null,
    error: null,
    outcome: null,
  };
  if (delivery.logout_token) {
    try {
      const claims = jose.decodeJwt(delivery.logout_token);
      Object.assign(delivery, { client_id: claims.aud, sub: claims.sub, sid: claims.sid });
    } catch { /* recorded as it is */ }
  }
  const record = () => {
    state.deliveries.push(delivery);
    if (state.deliveries.length > MAX_DELIVERIES) state.deliveries.shift();
  };
  return new Promise((resolve, reject) => {
    const mod = target.protocol === 'https:' ? https : http;
    const req = mod.request(target, {
      method: delivery.method,
      headers,
      ca: state.trustCa,
      lookup: loopbackLookup,
      signal: options.signal,
      agent: false,
    }, (res) => {
      const chunks = [];
      let size = 0;
      res.on('data', (c) => {
        size += c.length;
        if (size <= MAX_BODY) chunks.push(c);
      });
      res.on('end', () => {
        delivery.status = res.statusCode;
        record();
        const responseHeaders = new Headers();
        for (const [k, v] of Object.entries(res.headers)) {
          for (const one of [v].flat()) responseHeaders.append(k, one);
        }
        const empty = [101, 204, 205, 304].includes(res.statusCode);
        resolve(new Response(empty ? null : Buffer.concat(chunks), {
          status: res.statusCode, headers: responseHeaders,
        }));
      });
      res.on('error', (err) => {
        delivery.error = err.message;
        record();
        reject(err);
      });
    });
    req.on('error', (err) => {
      delivery.error = err.message;
      record();
      reject(err);
    });
    req.end(body ?? undefined);
  });
}

/** Mark the latest unmarked delivery of this client and sid with the provider's event. */
function markDelivery(outcome, client, sub, sid, err) {
  for (let i = state.deliveries.length - 1; i >= 0; i -= 1) {
    const d = state.deliveries[i];
    if (d.outcome === null && d.client_id === client.clientId && d.sid === sid) {
      d.outcome = outcome;
      if (err && !d.error) d.error = err.message;
      return;
    }
  }
  state.deliveries.push({
    uri: client.backchannelLogoutUri, client_id: client.clientId, sub, sid,
    status: null, error: err ? err.message : null, outcome, logout_token: null,
  });
}

// ---------------------------------------------------------------- pages

const html = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(title, body) {
  return `<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>${html(title)}</title></head>`
    + `<body><h1>${html(title)}</h1>${body}</body></html>`;
}

function loginPage(uid, error) {
  const err = error ? `<p class="error" role="alert">${html(error)}</p>` : '';
  return page('Sign in', `${err}<form method="post" action="/interaction/${html(uid)}/login">`
    + '<label>Login <input name="login" autocomplete="username"></label>'
    + '<label>Password <input type="password" name="password" autocomplete="current-password"></label>'
    + '<button type="submit">Sign in</button></form>');
}

/** rpInitiatedLogout.logoutSource: `form` is oidc-provider's `<form id="op.logoutForm">`. */
async function logoutSource(ctx, form) {
  ctx.body = page('Sign out', `<p>Sign out of ${html(state.issuer)}?</p>${form}`
    + '<button type="submit" form="op.logoutForm" name="logout" value="yes">Yes, sign me out</button>'
    + '<button type="submit" form="op.logoutForm">No, stay signed in</button>');
}

async function readBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > MAX_BODY) throw Object.assign(new Error('body too large'), { status: 413 });
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

// ---------------------------------------------------------------- interactions

/** GET /interaction/:uid: the login form, or consent granted without asking. */
async function interactionPage(ctx, provider) {
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  const { uid, prompt, params, session } = details;
  if (prompt.name === 'login') {
    ctx.type = 'html';
    ctx.body = loginPage(uid);
    return;
  }
  if (prompt.name !== 'consent') {
    ctx.status = 400;
    ctx.type = 'html';
    ctx.body = page('Unsupported prompt', `<p>${html(prompt.name)}</p>`);
    return;
  }
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
  if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
  for (const [indicator, scope] of Object.entries(prompt.details.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scope.join(' '));
  }
  const grantId = await grant.save();
  const consent = details.grantId ? {} : { grantId };
  const to = await provider.interactionResult(ctx.req, ctx.res, { consent }, {
    mergeWithLastSubmission: true,
  });
  ctx.status = 303;
  ctx.redirect(to);
}

/** POST /interaction/:uid/login: check the password; the form again (200) when it is wrong. */
async function interactionLogin(ctx, provider) {
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  if (details.prompt.name !== 'login') {
    ctx.status = 400;
    ctx.type = 'html';
    ctx.body = page('No login expected', '');
    return;
  }
  const form = new URLSearchParams(await readBody(ctx.req));
  const login = form.get('login') ?? '';
  const password = form.get('password') ?? '';
  const user = [...state.users.values()].find((u) => u.login === login);
  if (!user || user.disabled || user.password !== password) {
    ctx.status = 200;
    ctx.type = 'html';
    ctx.body = loginPage(details.uid, 'Invalid login or password.');
    return;
  }
  const to = await provider.interactionResult(ctx.req, ctx.res, {
    login: { accountId: user.sub },
  }, { mergeWithLastSubmission: false });
  ctx.status = 303;
  ctx.redirect(to);
}

function interactionRoutes(provider) {
  return async (ctx, next) => {
    const m = /^\/interaction\/([A-Za-z0-9_-]+)(\/login)?$/.exec(ctx.path);
    if (!m) {
      await next();
      return;
    }
    ctx.set('cache-control', 'no-store');
    try {
      if (ctx.method === 'GET' && !m[2]) {
        await interactionPage(ctx, provider);
      } else if (ctx.method === 'POST' && m[2]) {
        await interactionLogin(ctx, provider);
      } else {
        ctx.status = 405;
        ctx.body = page('Method not allowed', '');
      }
    } catch (err) {
      if (!(err instanceof errors.SessionNotFound) && !err.status) throw err;
      ctx.status = err.status ?? 400;
      ctx.type = 'html';
      ctx.body = page('Interaction failed', `<p>${html(err.message)}</p>`);
    }
  };
}

// ---------------------------------------------------------------- tampering

const TAMPER_MODES = new Set([
  'none', 'bad_signature', 'wrong_aud', 'wrong_iss', 'wrong_nonce', 'expired', 'future_iat',
  'hs256', 'foreign_key', 'claims',
]);

function b64json(part) {
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
}

async function signWith(header, payload, key) {
  return new jose.CompactSign(Buffer.from(JSON.stringify(payload)))
    .setProtectedHeader(header)
    .sign(key);
}

/** The private key of the real signing key `kid` (the one the JWKS lists). */
async function realKey(kid) {
  const found = state.keys.find((k) => k.kid === kid) ?? state.keys[0];
  return { key: await jose.importJWK(found.jwk, 'RS256'), kid: found.kid };
}

/** Apply `overrides` to `claims`: a `null` value removes the claim, `undefined` keeps it. */
function override(claims, overrides) {
  const out = { ...claims };
  for (const [k, v] of Object.entries(overrides ?? {})) {
    if (v === null) delete out[k];
    else if (v !== undefined) out[k] = v;
  }
  return out;
}

/** The ID token as `/tamper` says it should be altered; `client` is the token's client. */
async function tamperIdToken(token, client) {
  const { mode } = state.tamper;
  const [h, p, s] = token.split('.');
  const header = b64json(h);
  const claims = b64json(p);
  const now = Math.floor(Date.now() / 1000);
  const resign = async (changed) => signWith(header, changed, (await realKey(header.kid)).key);
  switch (mode) {
    case 'bad_signature': {
      const sig = Buffer.from(s, 'base64url');
      sig[sig.length >> 1] ^= 0x01;
      return `${h}.${p}.${sig.toString('base64url')}`;
    }
    case 'wrong_aud':
      return resign({ ...claims, aud: state.tamper.value ?? `not-${claims.aud}` });
    case 'wrong_iss':
      return resign({ ...claims, iss: state.tamper.value ?? 'https://attacker.example.test' });
    case 'wrong_nonce':
      return resign({ ...claims, nonce: state.tamper.value ?? `not-the-nonce-${randomBytes(6).toString('base64url')}` });
    case 'expired':
      return resign({ ...claims, iat: now - 7200, exp: now - 3600 });
    case 'future_iat':
      return resign({ ...claims, iat: now + 3600, exp: now + 3600 + (claims.exp - claims.iat) });
    case 'claims':
      return resign(override(claims, state.tamper.claims));
    case 'hs256':
      return signWith({ ...header, alg: 'HS256' }, claims, Buffer.from(client.clientSecret));
    case 'foreign_key':
      return signWith({ ...header, alg: 'RS256', kid: state.foreign.kid }, claims,
        await jose.importJWK(state.foreign.jwk, 'RS256'));
    default:
      return token;
  }
}

/** After the token endpoint: alter its `id_token` while a tamper mode is on. */
async function tamperMiddleware(ctx, next) {
  await next();
  if (state.tamper.mode === 'none' || ctx.oidc?.route !== 'token' || ctx.status !== 200) return;
  const body = ctx.body;
  if (!body || typeof body.id_token !== 'string') return;
  ctx.body = { ...body, id_token: await tamperIdToken(body.id_token, ctx.oidc.client) };
}

// ---------------------------------------------------------------- the provider

function clientMetadata(c) {
  const meta = {
    client_id: c.client_id,
    client_secret: c.client_secret,
    redirect_uris: c.redirect_uris,
    post_logout_redirect_uris: c.post_logout_redirect_uris ?? [],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  };
  if (c.backchannel_logout_uri) {
    meta.backchannel_logout_uri = c.backchannel_logout_uri;
    meta.backchannel_logout_session_required = true;
  }
  return meta;
}

async function findAccount(ctx, sub) {
  const user = state.users.get(sub);
  if (!user || user.disabled) return undefined;
  return {
    accountId: sub,
    async claims() {
      return { ...(user.claims ?? {}), sub };
    },
  };
}

function configuration() {
  return {
    adapter: StoreAdapter,
    clients: state.clients.map(clientMetadata),
    jwks: { keys: state.keys.map((k) => k.jwk) },
    cookies: { keys: state.cookieKeys },
    findAccount,
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'],
      groups: ['groups'],
    },
    scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
    features: {
      devInteractions: { enabled: false },
      backchannelLogout: { enabled: true },
      rpInitiatedLogout: { enabled: true, logoutSource },
      revocation: { enabled: true },
      userinfo: { enabled: true },
    },
    pkce: { required: () => true },
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    ttl: { ...state.ttl },
    fetch: backchannelFetch,
  };
}

function buildProvider() {
  const provider = new Provider(state.issuer, configuration());
  provider.use(interactionRoutes(provider));
  provider.use(tamperMiddleware);
  provider.on('backchannel.success', (ctx, client, sub, sid) => markDelivery('success', client, sub, sid));
  provider.on('backchannel.error', (ctx, err, client, sub, sid) => {
    log('backchannel.error', client.clientId, err.message);
    markDelivery('error', client, sub, sid, err);
  });
  for (const event of ['server_error', 'authorization.error', 'grant.error', 'end_session.error',
    'userinfo.error', 'revocation.error']) {
    provider.on(event, (ctx, err) => log(event, err?.message ?? '', err?.error_description ?? ''));
  }
  state.provider = provider;
  state.handler = provider.callback();
}

// ---------------------------------------------------------------- control endpoints

class BadRequest extends Error {}

const need = (cond, what) => {
  if (!cond) throw new BadRequest(what);
};
const isStrings = (v) => Array.isArray(v) && v.every((x) => typeof x === 'string');

function checkUser(u) {
  need(u && typeof u === 'object', 'a user must be an object');
  need(typeof u.sub === 'string' && u.sub, 'user.sub must be a non-empty string');
  need(typeof u.login === 'string', 'user.login must be a string');
  need(typeof u.password === 'string', 'user.password must be a string');
  need(u.claims === undefined || (u.claims && typeof u.claims === 'object'), 'user.claims must be an object');
  return { sub: u.sub, login: u.login, password: u.password, claims: u.claims ?? {}, disabled: !!u.disabled };
}

const TTL_KEYS = ['AccessToken', 'IdToken', 'RefreshToken', 'Session', 'Grant', 'AuthorizationCode', 'Interaction'];

/** POST /configure: clients, users, the CA to trust for back-channel POSTs, TTLs (seconds). */
async function configure(body) {
  need(Array.isArray(body.clients) && body.clients.length > 0, 'clients: a non-empty list');
  for (const c of body.clients) {
    need(typeof c.client_id === 'string' && c.client_id, 'client_id must be a non-empty string');
    need(typeof c.client_secret === 'string' && c.client_secret, 'client_secret must be a non-empty string');
    need(isStrings(c.redirect_uris) && c.redirect_uris.length, 'redirect_uris: a non-empty list of strings');
    need(c.post_logout_redirect_uris === undefined || isStrings(c.post_logout_redirect_uris), 'post_logout_redirect_uris: a list of strings');
    need(c.backchannel_logout_uri == null || typeof c.backchannel_logout_uri === 'string', 'backchannel_logout_uri: a string');
  }
  need(Array.isArray(body.users ?? []), 'users: a list');
  const ttl = {};
  for (const [k, v] of Object.entries(body.ttl ?? {})) {
    need(TTL_KEYS.includes(k), `ttl.${k}: unknown (one of ${TTL_KEYS.join(', ')})`);
    need(Number.isInteger(v) && v > 0, `ttl.${k}: a positive number of seconds`);
    ttl[k] = v;
  }
  need(body.trust_ca_pem == null || typeof body.trust_ca_pem === 'string', 'trust_ca_pem: a PEM string');
  state.clients = body.clients;
  state.users = new Map((body.users ?? []).map(checkUser).map((u) => [u.sub, u]));
  state.ttl = ttl;
  state.trustCa = body.trust_ca_pem ?? undefined;
  buildProvider();
  return { issuer: state.issuer };
}

/** POST /tamper {"mode": M, "value"?: wrong value, "claims"?: overrides for mode "claims"}. */
async function tamper(body) {
  need(TAMPER_MODES.has(body.mode), `mode: one of ${[...TAMPER_MODES].join(', ')}`);
  need(body.mode !== 'claims' || (body.claims && typeof body.claims === 'object'), 'mode "claims" needs claims: {...}');
  state.tamper = { mode: body.mode, value: body.value, claims: body.claims };
  return { mode: body.mode };
}

/**
 * POST /logout-token {claims..., "alg"?, "typ"?, "kid"?, "foreign_key"?}: a logout token as the
 * provider would send it (iss, aud = first client, iat, exp = iat + 120 like oidc-provider's own,
 * jti, events; typ logout+jwt), signed with the current signing key (or the foreign one, or HS256
 * with the audience's client secret, or `alg: none` unsigned). Given claims override the
 * defaults; `null` removes one (and `typ: null` / `kid: null` remove the header's).
 */
async function logoutToken(body) {
  const { alg = 'RS256', typ, kid, foreign_key: foreignKey = false, ...given } = body;
  need(['RS256', 'HS256', 'none'].includes(alg), 'alg: RS256, HS256 or none');
  need(state.provider, 'not configured');
  const now = Math.floor(Date.now() / 1000);
  const claims = override({
    iss: state.issuer,
    aud: state.clients[0].client_id,
    iat: now,
    exp: now + 120,
    jti: randomBytes(16).toString('base64url'),
    events: { 'http://schemas.openid.net/event/backchannel-logout': {} },
  }, given);
  const signer = foreignKey ? state.foreign : state.keys[0];
  const header = override({ alg, typ: 'logout+jwt', kid: signer.kid }, { kid, typ });
  if (alg === 'none') {
    const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
    delete header.kid;
    return { logout_token: `${enc(header)}.${enc(claims)}.` };
  }
  if (alg === 'HS256') {
    const aud = [claims.aud].flat()[0];
    const client = state.clients.find((c) => c.client_id === aud) ?? state.clients[0];
    return { logout_token: await signWith(header, claims, Buffer.from(client.client_secret)) };
  }
  return { logout_token: await signWith(header, claims, await jose.importJWK(signer.jwk, 'RS256')) };
}

/** POST /rotate-keys {"keep_old": bool}: a new signing key first in the JWKS. */
async function rotateKeys(body) {
  need(state.provider, 'not configured');
  const fresh = await newSigningKey('rotated');
  state.keys = body.keep_old ? [fresh, ...state.keys] : [fresh];
  buildProvider();
  return { kid: fresh.kid, kids: state.keys.map((k) => k.kid) };
}

/**
 * POST /end-sessions {"sub": S}: end every provider session of S as the provider's own logout
 * does: a back-channel logout token to each client of the session that registered a
 * `backchannel_logout_uri` (the provider's Client#backchannelLogout, with the session's sid),
 * the grants revoked, the session destroyed. (oidc-provider ends sessions only from a request
 * that carries the session cookie; this is that code path minus the cookie.)
 */
async function endSessions(body) {
  need(typeof body.sub === 'string' && body.sub, 'sub: a non-empty string');
  need(state.provider, 'not configured');
  const { provider } = state;
  const sessions = sessionsOf(body.sub);
  const before = state.deliveries.length;
  for (const { id, payload } of sessions) {
    const attempts = [];
    for (const [clientId, auth] of Object.entries(payload.authorizations ?? {})) {
      const client = await provider.Client.find(clientId);
      if (client?.backchannelLogoutUri) {
        attempts.push(client.backchannelLogout(payload.accountId, auth.sid).then(
          () => provider.emit('backchannel.success', undefined, client, payload.accountId, auth.sid),
          (err) => provider.emit('backchannel.error', undefined, err, client, payload.accountId, auth.sid),
        ));
      }
      if (auth.grantId) revokeGrant(auth.grantId);
    }
    await Promise.all(attempts);
    store.delete(`Session:${id}`);
  }
  return { sessions: sessions.length, deliveries: state.deliveries.slice(before) };
}

async function control(req) {
  const url = new URL(req.url, 'http://control');
  const raw = req.method === 'GET' || req.method === 'DELETE' ? '' : await readBody(req);
  let body = {};
  if (raw) {
    try {
      body = JSON.parse(raw);
    } catch {
      throw new BadRequest('the body is not JSON');
    }
    need(body && typeof body === 'object' && !Array.isArray(body), 'the body must be a JSON object');
  }
  const user = /^\/users\/([^/]+)$/.exec(url.pathname);
  const route = `${req.method} ${user ? '/users/:sub' : url.pathname}`;
  switch (route) {
    case 'POST /configure': return configure(body);
    case 'POST /tamper': return tamper(body);
    case 'POST /logout-token': return logoutToken(body);
    case 'POST /rotate-keys': return rotateKeys(body);
    case 'POST /end-sessions': return endSessions(body);
    case 'GET /backchannel-deliveries': return state.deliveries;
    case 'POST /users/:sub': {
      const u = checkUser({ ...body, sub: decodeURIComponent(user[1]) });
      state.users.set(u.sub, u);
      return { sub: u.sub };
    }
    case 'DELETE /users/:sub': {
      const sub = decodeURIComponent(user[1]);
      return { sub, deleted: state.users.delete(sub) };
    }
    default:
      throw Object.assign(new BadRequest(`no such control endpoint: ${route}`), { status: 404 });
  }
}

// ---------------------------------------------------------------- listeners

const reply = (res, status, value) => {
  const text = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
};

const controlServer = http.createServer((req, res) => {
  control(req).then((value) => reply(res, 200, value ?? {}), (err) => {
    if (err instanceof BadRequest) {
      reply(res, err.status ?? 400, { error: err.message });
    } else {
      log('control', req.method, req.url, err.stack ?? err.message);
      reply(res, err.status ?? 500, { error: err.message });
    }
  });
});

const issuerServer = https.createServer({
  cert: readFileSync(certPath),
  key: readFileSync(keyPath),
}, (req, res) => {
  if (state.handler) {
    state.handler(req, res);
  } else {
    reply(res, 503, { error: 'temporarily_unavailable', error_description: 'not configured yet' });
  }
});

const listen = (server) => new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(0, '127.0.0.1', () => resolve(server.address().port));
});

state.keys = [await newSigningKey('initial')];
state.foreign = await newSigningKey('foreign');
const issuerPort = await listen(issuerServer);
const controlPort = await listen(controlServer);
state.issuer = `https://127.0.0.1:${issuerPort}`;
process.stdout.write(`ready issuer=${state.issuer} control=http://127.0.0.1:${controlPort}\n`);
