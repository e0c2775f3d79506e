// A real browser through the gateway's own pages: headless Debian Chromium (playwright-core,
// no browser download) walks the password login, the sessions page, TOTP enrolment, the
// second-factor sign-in (a replayed code refused, the next step's code accepted) and logout.
// Run by tests/e2e/browser.rs against a gateway it started; by hand:
//
//   SG_BROWSER_ORIGIN=https://localhost SG_BROWSER_CONNECT=127.0.0.1:PORT \
//   SG_BROWSER_USER=alice SG_BROWSER_PASSWORD=... SG_BROWSER_PRODUCT=... \
//   SG_BROWSER_CA=ca.pem node tests/browser/walk.mjs
//
// Inputs (environment):
//   SG_BROWSER_ORIGIN    the gateway's public origin (`server.public_origin`), https://localhost[:port]
//   SG_BROWSER_CONNECT   optional `ip:port` the browser connects to for that origin (the gateway
//                        behind a port mapping: Chromium's --host-resolver-rules maps host:port)
//   SG_BROWSER_USER, SG_BROWSER_PASSWORD   a user of the users file, without a second factor yet
//   SG_BROWSER_PRODUCT   `[ui] product_name`: every gateway page must show it
//   SG_BROWSER_CA        the PEM of the CA that signed the gateway's certificate
//   SG_BROWSER_OUT       optional directory for screenshots and the browser's HOME (default: a
//                        new temporary directory)
//   SG_BROWSER_CHROMIUM  optional, default /usr/bin/chromium
//
// TLS is trusted for real, never with ignoreHTTPSErrors (Chrome refuses WebAuthn on a page with
// a certificate error): the browser runs with a HOME of its own whose NSS database
// (~/.pki/nssdb, written with certutil) trusts the test CA.
//
// Output: one JSON line per step, {"step", "ok": true, ...}; the first failure prints
// {"step", "ok": false, "error", "url", "screenshot"} and exits 1. Every gateway page (HTML
// under the origin) must carry a Content-Security-Policy header and the product name, and no
// page may log a JavaScript error, throw, or report a CSP violation.

import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { chromium } from 'playwright-core';

function need(name) {
  const v = process.env[name];
  if (!v) {
    console.log(JSON.stringify({ step: 'inputs', ok: false, error: `${name} is not set` }));
    process.exit(2);
  }
  return v;
}

const cfg = {
  origin: new URL(need('SG_BROWSER_ORIGIN')).origin,
  connect: process.env.SG_BROWSER_CONNECT || '',
  user: need('SG_BROWSER_USER'),
  password: need('SG_BROWSER_PASSWORD'),
  product: need('SG_BROWSER_PRODUCT'),
  ca: need('SG_BROWSER_CA'),
  out: process.env.SG_BROWSER_OUT || fs.mkdtempSync(path.join(os.tmpdir(), 'sg-browser-')),
  chromium: process.env.SG_BROWSER_CHROMIUM || '/usr/bin/chromium',
};
fs.mkdirSync(cfg.out, { recursive: true });

// ---- TOTP (RFC 6238 over RFC 4226), as an authenticator app computes it --------------------

function base32Decode(s) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  const clean = s.toUpperCase().replace(/[\s=-]/g, '');
  let bits = 0;
  let value = 0;
  const out = [];
  for (const c of clean) {
    const i = alphabet.indexOf(c);
    if (i < 0) throw new Error(`not base32: ${JSON.stringify(s)}`);
    value = (value << 5) | i;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

/** The code of `params` ({secret, algorithm, digits, period}) for time step `step`. */
function totpAt(params, step) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = crypto
    .createHmac(params.algorithm, base32Decode(params.secret))
    .update(counter)
    .digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const n = mac.readUInt32BE(offset) & 0x7fffffff;
  return String(n % 10 ** params.digits).padStart(params.digits, '0');
}

function currentStep(period) {
  return Math.floor(Date.now() / 1000 / period);
}

/** TOTP parameters: the key shown on the page, and an otpauth URI's settings when the page
 * carries one (the QR code is an image; the defaults are RFC 6238's and every app's). */
function totpParams(secret, otpauthUri) {
  const p = { secret, algorithm: 'sha1', digits: 6, period: 30 };
  if (otpauthUri) {
    const u = new URL(otpauthUri);
    const q = u.searchParams;
    if (q.get('secret') && q.get('secret') !== secret) {
      throw new Error(`the otpauth URI's secret ${q.get('secret')} is not the key shown (${secret})`);
    }
    if (q.get('algorithm')) p.algorithm = q.get('algorithm').toLowerCase();
    if (q.get('digits')) p.digits = Number(q.get('digits'));
    if (q.get('period')) p.period = Number(q.get('period'));
  }
  return p;
}

// ---- the browser and what every page must satisfy ------------------------------------------

/** What the walk carries from step to step. */
const w = {
  browser: null,
  context: null,
  page: null,
  cdp: null,
  authenticatorId: null,
  totp: null,
  /** The time step of the last code the gateway accepted. */
  lastStep: null,
  /** Problems seen by the page listeners since the last check. */
  problems: [],
  /** Documents answered with an error status, as Chrome logs them; see expectDocumentStatus. */
  documentErrors: [],
  /** Gateway pages (HTML documents) seen, by path. */
  gatewayPages: new Set(),
};

const url = (p) => cfg.origin + p;

function isGatewayOrigin(u) {
  try {
    return new URL(u).origin === cfg.origin;
  } catch {
    return false;
  }
}

function fail(msg) {
  throw new Error(msg);
}

function check(cond, msg) {
  if (!cond) fail(msg);
}

/** Per page: console errors, uncaught exceptions, CSP violations (reported by an init script
 * through a binding, so that a violation during a navigation away is not lost) and gateway
 * documents without a CSP header. */
async function watch(context, page) {
  await context.exposeBinding('__sgViolation', ({ frame }, v) => {
    w.problems.push(`CSP violation on ${frame.url()}: ${JSON.stringify(v)}`);
  });
  await context.addInitScript(() => {
    window.__sgViolations = [];
    document.addEventListener('securitypolicyviolation', (e) => {
      const v = {
        directive: e.violatedDirective,
        effective: e.effectiveDirective,
        blocked: e.blockedURI,
        sample: e.sample,
        source: e.sourceFile,
        line: e.lineNumber,
      };
      window.__sgViolations.push(v);
      window.__sgViolation(v);
    });
  });
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    // Chrome logs a document answered with an error status as a console error too: a step
    // that expects that status takes it (expectDocumentStatus); any other is a problem.
    const status = m.text().match(/^Failed to load resource: the server responded with a status of (\d+)/);
    const where = m.location()?.url || '';
    if (status && where === page.url()) {
      w.documentErrors.push({ status: Number(status[1]), url: where });
      return;
    }
    w.problems.push(`console error on ${page.url()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => w.problems.push(`JavaScript error on ${page.url()}: ${e.message}`));
  page.on('response', async (r) => {
    const req = r.request();
    if (!req.isNavigationRequest() || r.frame() !== page.mainFrame()) return;
    if (!isGatewayOrigin(r.url()) || r.status() >= 300 && r.status() < 400) return;
    const type = r.headers()['content-type'] || '';
    if (!type.startsWith('text/html')) return; // the app's answers (the echo is JSON)
    w.gatewayPages.add(new URL(r.url()).pathname);
    if (!r.headers()['content-security-policy']) {
      w.problems.push(`gateway page ${r.url()} (${r.status()}) has no Content-Security-Policy header`);
    }
  });
}

/** Fail on anything the listeners saw. */
async function noProblems() {
  // Violations already recorded in the page (the binding may lag by a task).
  const inPage = await w.page.evaluate(() => window.__sgViolations || []).catch(() => []);
  const seen = new Set(w.problems);
  for (const v of inPage) {
    const msg = `CSP violation on ${w.page.url()}: ${JSON.stringify(v)}`;
    if (!seen.has(msg)) w.problems.push(msg);
  }
  for (const e of w.documentErrors.splice(0)) {
    w.problems.push(`console error on ${e.url}: the document was answered ${e.status}, which no step expected`);
  }
  if (w.problems.length) {
    const all = w.problems.splice(0);
    fail(all.join('; '));
  }
}

/** The current document was answered `status` on purpose: take Chrome's console error for it
 * (it may be logged a moment after the load). */
async function expectDocumentStatus(status) {
  const deadline = Date.now() + 2000;
  for (;;) {
    const i = w.documentErrors.findIndex((e) => e.status === status && e.url === w.page.url());
    if (i >= 0) {
      w.documentErrors.splice(i, 1);
      return;
    }
    if (Date.now() > deadline) return; // not logged: nothing to take
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The current page is one of the gateway's: its CSP header, the product name in its title
 * and heading, a secure context. `resp` is the document's response. */
async function gatewayPage(resp, what) {
  check(resp, `${what}: no response`);
  check(isGatewayOrigin(resp.url()), `${what}: ${resp.url()} is not on ${cfg.origin}`);
  const csp = resp.headers()['content-security-policy'];
  check(csp, `${what}: no Content-Security-Policy header (status ${resp.status()})`);
  const title = await w.page.title();
  check(title.includes(cfg.product), `${what}: the title ${JSON.stringify(title)} lacks the product name ${JSON.stringify(cfg.product)}`);
  const header = (await w.page.locator('header.product').textContent().catch(() => null)) || '';
  check(header.includes(cfg.product), `${what}: the page's header ${JSON.stringify(header)} lacks the product name`);
  check(await w.page.evaluate(() => window.isSecureContext), `${what}: not a secure context`);
  return { csp };
}

/** The app's echo (tests/upstream.py) on the current page: the request it received. */
async function appEcho(resp, wantPath) {
  check(resp, 'no response from the app');
  const u = new URL(resp.url());
  check(isGatewayOrigin(resp.url()) && u.pathname === wantPath, `landed on ${resp.url()}, not ${wantPath}`);
  check(resp.status() === 200, `the app answered ${resp.status()}`);
  let echo;
  try {
    echo = JSON.parse(await resp.text());
  } catch (e) {
    fail(`the app's page is not its JSON echo: ${e.message}`);
  }
  const shown = await w.page.evaluate(() => document.body.innerText);
  const users = echo.headers?.['x-auth-user'];
  check(
    Array.isArray(users) && users.length === 1 && users[0] === cfg.user,
    `the app received x-auth-user ${JSON.stringify(users)}, not [${JSON.stringify(cfg.user)}]`,
  );
  check(shown.includes('x-auth-user') && shown.includes(cfg.user), 'the page does not show x-auth-user and the user');
  return echo;
}

/** The gateway's cookies as the browser holds them: `__Host-`, Secure, HttpOnly, Path=/, no
 * Domain (host-only: Playwright reports a Domain cookie with a leading dot). */
async function sessionCookies() {
  const host = new URL(cfg.origin).hostname;
  const cookies = (await w.context.cookies(cfg.origin)).filter((c) => c.domain.replace(/^\./, '') === host);
  check(cookies.length >= 2, `expected the session's cookies (access and refresh), the browser holds ${JSON.stringify(cookies.map((c) => c.name))}`);
  for (const c of cookies) {
    const bad = [];
    if (!c.name.startsWith('__Host-')) bad.push('not __Host- prefixed');
    if (!c.secure) bad.push('not Secure');
    if (!c.httpOnly) bad.push('not HttpOnly');
    if (c.path !== '/') bad.push(`Path=${c.path}`);
    if (c.domain !== host) bad.push(`Domain=${c.domain}`);
    check(bad.length === 0, `cookie ${c.name}: ${bad.join(', ')}`);
  }
  return cookies.map((c) => ({ name: c.name, sameSite: c.sameSite }));
}

async function noSessionCookies(what) {
  const left = (await w.context.cookies(cfg.origin)).filter((c) => c.name.startsWith('__Host-'));
  check(left.length === 0, `${what}: the browser still holds ${JSON.stringify(left.map((c) => c.name))}`);
}

/** Click and wait for the navigation it starts; the final document's response. */
async function clickAndLoad(locator) {
  const [resp] = await Promise.all([w.page.waitForNavigation({ waitUntil: 'load' }), locator.click()]);
  return resp;
}

/** Go to a protected path signed out: the login page, with the path as its return_to. */
async function toLoginFrom(p) {
  const resp = await w.page.goto(url(p));
  const at = new URL(w.page.url());
  check(at.pathname === '/.auth/login', `${p} signed out landed on ${w.page.url()}, not the login page`);
  await gatewayPage(resp, 'the login page');
  const returnTo = await w.page.locator('input[name=return_to]').inputValue();
  check(returnTo.includes(p), `the login form's return_to ${JSON.stringify(returnTo)} does not lead back to ${p}`);
  return resp;
}

async function submitPassword() {
  await w.page.getByLabel('Username').fill(cfg.user);
  await w.page.getByLabel('Password').fill(cfg.password);
  return clickAndLoad(w.page.getByRole('button', { name: 'Sign in', exact: true }));
}

/** Sign out from a gateway page with a form that posts to /.auth/logout (the page's own
 * origin, as a sign-out link of the app would). */
async function postLogoutForm() {
  const form = w.page.evaluate(() => {
    const f = document.createElement('form');
    f.method = 'post';
    f.action = '/.auth/logout';
    document.body.append(f);
    f.submit();
  });
  const [resp] = await Promise.all([w.page.waitForNavigation({ waitUntil: 'load' }), form]);
  return resp;
}

// ---- the walk -------------------------------------------------------------------------------

const steps = [
  ['the browser trusts the test CA (NSS database)', async () => {
    const home = path.join(cfg.out, 'home');
    const db = path.join(home, '.pki', 'nssdb');
    fs.mkdirSync(db, { recursive: true });
    const run = (args) => {
      const r = spawnSync('certutil', args, { encoding: 'utf8' });
      if (r.error) fail(`certutil: ${r.error.message} (Debian package libnss3-tools; scripts/test installs it)`);
      check(r.status === 0, `certutil ${args.join(' ')}: ${r.stderr || r.stdout}`);
      return r.stdout;
    };
    if (!fs.existsSync(path.join(db, 'cert9.db'))) run(['-d', `sql:${db}`, '-N', '--empty-password']);
    run(['-d', `sql:${db}`, '-A', '-t', 'C,,', '-n', 'sessiongate-test', '-i', cfg.ca]);
    const listed = run(['-d', `sql:${db}`, '-L']);
    check(/sessiongate-test\s+C,,/.test(listed), `the CA is not trusted in ${db}: ${listed}`);
    w.home = home;
    return { nssdb: db };
  }],

  ['launch chromium', async () => {
    const origin = new URL(cfg.origin);
    const args = ['--no-sandbox', '--disable-dev-shm-usage', '--no-first-run', '--disable-background-networking'];
    if (cfg.connect) {
      const port = origin.port || '443';
      args.push(`--host-resolver-rules=MAP ${origin.hostname}:${port} ${cfg.connect}`);
    }
    w.browser = await chromium.launch({
      executablePath: cfg.chromium,
      headless: true,
      args,
      env: { ...process.env, HOME: w.home },
      timeout: 30_000,
    });
    w.context = await w.browser.newContext();
    w.context.setDefaultTimeout(15_000);
    w.context.setDefaultNavigationTimeout(15_000);
    w.page = await w.context.newPage();
    await watch(w.context, w.page);
    return { version: w.browser.version(), args };
  }],

  ['a protected page redirects to the login page', async () => {
    const resp = await toLoginFrom('/private/hello');
    // The navigation above would have failed on a certificate error; the origin is a secure
    // context without one, which WebAuthn needs.
    const security = await resp.securityDetails();
    check(security, 'no TLS security details on the login page');
    return { url: w.page.url(), csp: resp.headers()['content-security-policy'], tls: security.protocol };
  }],

  ['webauthn virtual authenticator on the gateway origin', async () => {
    w.cdp = await w.context.newCDPSession(w.page);
    await w.cdp.send('WebAuthn.enable');
    const { authenticatorId } = await w.cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: {
        protocol: 'ctap2',
        transport: 'internal',
        hasResidentKey: true,
        hasUserVerification: true,
        isUserVerified: true,
        automaticPresenceSimulation: true,
      },
    });
    w.authenticatorId = authenticatorId;
    // Chrome refuses WebAuthn on a page with a certificate error: prove it is not refused here
    // with a throwaway, non-discoverable credential, then clear it so that the passkey steps
    // start from an empty authenticator.
    const rpId = new URL(cfg.origin).hostname;
    const made = await w.page.evaluate(async (rpId) => {
      try {
        const c = await navigator.credentials.create({
          publicKey: {
            challenge: crypto.getRandomValues(new Uint8Array(32)),
            rp: { name: 'browser-walk probe', id: rpId },
            user: { id: crypto.getRandomValues(new Uint8Array(16)), name: 'probe', displayName: 'probe' },
            pubKeyCredParams: [{ type: 'public-key', alg: -7 }],
            authenticatorSelection: { residentKey: 'discouraged', userVerification: 'preferred' },
            timeout: 10_000,
          },
        });
        return { ok: true, type: c.type };
      } catch (e) {
        return { ok: false, error: `${e.name}: ${e.message}` };
      }
    }, rpId);
    check(made.ok, `navigator.credentials.create is refused on ${w.page.url()}: ${made.error}`);
    await w.cdp.send('WebAuthn.clearCredentials', { authenticatorId });
    const { credentials } = await w.cdp.send('WebAuthn.getCredentials', { authenticatorId });
    check(credentials.length === 0, 'the probe credential was not cleared');
    return { authenticatorId, rpId };
  }],

  ['password login lands on the app with the identity', async () => {
    const resp = await submitPassword();
    await appEcho(resp, '/private/hello');
    return { url: w.page.url(), cookies: await sessionCookies() };
  }],

  ['sessions page', async () => {
    const resp = await w.page.goto(url('/.auth/sessions'));
    await gatewayPage(resp, 'the sessions page');
    check(resp.status() === 200, `the sessions page answered ${resp.status()}`);
    check(await w.page.getByText('This device').count() === 1, 'the sessions page does not mark this device');
    check(
      await w.page.getByRole('button', { name: 'Set up two-factor authentication' }).count() === 1,
      'the sessions page has no "Set up two-factor authentication" button',
    );
    return { url: w.page.url() };
  }],

  ['totp enrolment page', async () => {
    const resp = await clickAndLoad(w.page.getByRole('button', { name: 'Set up two-factor authentication' }));
    await gatewayPage(resp, 'the enrolment page');
    check(resp.status() === 200, `the enrolment page answered ${resp.status()}`);
    check(new URL(w.page.url()).pathname === '/.auth/totp/enroll', `enrolment landed on ${w.page.url()}`);
    const svg = w.page.locator('.qr svg');
    check(await svg.count() === 1, 'the enrolment page has no inline SVG QR code');
    const box = await svg.boundingBox();
    check(box && box.width > 50 && box.height > 50, `the QR code is not drawn (box ${JSON.stringify(box)})`);
    const secret = ((await w.page.locator('main code').first().textContent()) || '').trim();
    check(/^[A-Z2-7 ]{16,}=*$/.test(secret), `the key on the page is not base32: ${JSON.stringify(secret)}`);
    const html = await w.page.content();
    const uri = html.match(/otpauth:\/\/totp\/[^"'<\s]+/)?.[0]?.replace(/&amp;/g, '&');
    w.totp = totpParams(secret.replace(/\s/g, ''), uri);
    return { secret_len: w.totp.secret.length, otpauth_uri_on_page: Boolean(uri), algorithm: w.totp.algorithm };
  }],

  ['totp confirmation shows the recovery codes', async () => {
    // Away from a step's edge, so the code is of the step the gateway sees too.
    const into = (Date.now() / 1000) % w.totp.period;
    if (into > w.totp.period - 3) await new Promise((r) => setTimeout(r, (w.totp.period - into + 0.5) * 1000));
    const step = currentStep(w.totp.period);
    await w.page.getByLabel('Code from the app').fill(totpAt(w.totp, step));
    const resp = await clickAndLoad(w.page.getByRole('button', { name: 'Turn on' }));
    await gatewayPage(resp, 'the recovery codes page');
    check(resp.status() === 200, `confirming answered ${resp.status()}: ${await w.page.locator('main').innerText()}`);
    const codes = await w.page.locator('ul.codes li').allTextContents();
    check(codes.length === 10, `expected 10 recovery codes, the page shows ${codes.length}`);
    for (const c of codes) check(/^[A-Z0-9]{4}(-[A-Z0-9]{4}){3}$/.test(c.trim()), `not a recovery code: ${JSON.stringify(c)}`);
    w.lastStep = step;
    return { recovery_codes: codes.length };
  }],

  ['sessions page shows the factor on', async () => {
    const resp = await clickAndLoad(w.page.getByRole('link', { name: 'Back to your sessions' }));
    await gatewayPage(resp, 'the sessions page');
    const text = await w.page.locator('#second-factor + p').innerText();
    check(/^On\. 10 recovery codes left/.test(text), `the sessions page says ${JSON.stringify(text)}`);
    check(
      await w.page.getByRole('button', { name: 'Set up two-factor authentication' }).count() === 0,
      'the sessions page still offers to set up a factor',
    );
    return {};
  }],

  ['logout (sign out everywhere, from the sessions page)', async () => {
    const resp = await clickAndLoad(w.page.getByRole('button', { name: 'Sign out everywhere' }));
    await noSessionCookies('after signing out everywhere');
    await gatewayPage(resp, 'the page after signing out everywhere');
    return { url: w.page.url(), status: resp ? resp.status() : null };
  }],

  ['password login asks for the second factor', async () => {
    await toLoginFrom('/private/second');
    const resp = await submitPassword();
    await gatewayPage(resp, 'the second-factor page');
    check(await w.page.getByLabel('Code from your authenticator app').count() === 1, `no code field on ${w.page.url()}: ${await w.page.locator('main').innerText()}`);
    await noSessionCookies('before the second factor');
    return { url: w.page.url() };
  }],

  ['a replayed code is refused', async () => {
    await w.page.getByLabel('Code from your authenticator app').fill(totpAt(w.totp, w.lastStep));
    const resp = await clickAndLoad(w.page.getByRole('button', { name: 'Continue' }));
    await gatewayPage(resp, 'the second-factor page after a replayed code');
    check(resp.status() === 401, `a replayed code answered ${resp.status()}, not 401`);
    await expectDocumentStatus(401);
    const alert = await w.page.getByRole('alert').innerText().catch(() => '');
    check(/used already/.test(alert), `no refusal shown for a replayed code: ${JSON.stringify(alert)}`);
    await noSessionCookies('after a replayed code');
    return { status: resp.status(), message: alert };
  }],

  ['the next step\'s code signs in', async () => {
    // The step after the last one used: the current step, or one of clock skew ahead.
    const step = w.lastStep + 1;
    await w.page.getByLabel('Code from your authenticator app').fill(totpAt(w.totp, step));
    const resp = await clickAndLoad(w.page.getByRole('button', { name: 'Continue' }));
    await appEcho(resp, '/private/second');
    w.lastStep = step;
    return { url: w.page.url(), cookies: await sessionCookies(), steps_ahead: step - currentStep(w.totp.period) };
  }],

  ['passkey registration from the sessions page', async () => {
    const at = await w.page.goto(url('/.auth/sessions'));
    await gatewayPage(at, 'the sessions page');
    const form = w.page.locator('#passkey-register');
    check(await form.isVisible(), 'the sessions page shows no passkey form (did its script run?)');
    check(/None yet/.test(await w.page.locator('#passkeys + p').innerText()), 'the sessions page lists a passkey before any');
    await w.page.getByLabel('Name for a new passkey').fill('Walk key');
    // The script registers with the authenticator, then reloads the page.
    const resp = await clickAndLoad(w.page.getByRole('button', { name: 'Add a passkey' }));
    await gatewayPage(resp, 'the sessions page after adding a passkey');
    const row = w.page.locator('#passkeys + table tbody tr');
    check(await row.count() === 1, `the sessions page lists ${await row.count()} passkeys, not 1`);
    const cells = await row.first().locator('td').allInnerTexts();
    check(cells[0] === 'Walk key' && cells[2] === 'never', `the passkey row says ${JSON.stringify(cells)}`);
    const { credentials } = await w.cdp.send('WebAuthn.getCredentials', { authenticatorId: w.authenticatorId });
    check(credentials.length === 1, `the authenticator holds ${credentials.length} credentials, not 1`);
    const [c] = credentials;
    check(c.isResidentCredential, 'the passkey is not discoverable (resident): no passwordless sign-in with it');
    check(c.rpId === new URL(cfg.origin).hostname, `the passkey's RP ID is ${c.rpId}`);
    w.passkeySignCount = c.signCount;
    return { rpId: c.rpId, resident: c.isResidentCredential, signCount: c.signCount };
  }],

  ['logout (POST /.auth/logout)', async () => {
    const at = await w.page.goto(url('/.auth/sessions'));
    await gatewayPage(at, 'the sessions page');
    const resp = await postLogoutForm();
    await noSessionCookies('after logout');
    if (resp && (resp.headers()['content-type'] || '').startsWith('text/html')) {
      await gatewayPage(resp, 'the page after logout');
    }
    return { url: w.page.url(), status: resp ? resp.status() : null };
  }],

  ['passwordless login with the passkey', async () => {
    await toLoginFrom('/private/passkey');
    const button = w.page.getByRole('button', { name: 'Sign in with a passkey' });
    check(await button.isVisible(), 'the login page shows no passkey button (did its script run?)');
    // The script asks the authenticator, posts its answer, then goes where return_to says.
    const resp = await clickAndLoad(button);
    await appEcho(resp, '/private/passkey');
    const { credentials } = await w.cdp.send('WebAuthn.getCredentials', { authenticatorId: w.authenticatorId });
    check(credentials[0].signCount > w.passkeySignCount, 'the authenticator was not asked to sign');
    return { url: w.page.url(), cookies: await sessionCookies(), signCount: credentials[0].signCount };
  }],

  ['the sessions page shows the passkey used', async () => {
    const at = await w.page.goto(url('/.auth/sessions'));
    await gatewayPage(at, 'the sessions page');
    const cells = await w.page.locator('#passkeys + table tbody tr').first().locator('td').allInnerTexts();
    check(cells[0] === 'Walk key' && /^\d{4}-\d\d-\d\dT/.test(cells[2]), `the passkey row says ${JSON.stringify(cells)}`);
    return { last_used: cells[2] };
  }],

  ['logout after the passkey sign-in', async () => {
    const resp = await postLogoutForm();
    await noSessionCookies('after logout');
    if (resp && (resp.headers()['content-type'] || '').startsWith('text/html')) {
      await gatewayPage(resp, 'the page after logout');
    }
    return { url: w.page.url(), status: resp ? resp.status() : null };
  }],

  ['password login, then the passkey as the second factor', async () => {
    await toLoginFrom('/private/third');
    const resp = await submitPassword();
    await gatewayPage(resp, 'the second-factor page');
    check(await w.page.getByLabel('Code from your authenticator app').count() === 1, 'the second step offers no code field');
    const button = w.page.getByRole('button', { name: 'Use your passkey' });
    check(await button.isVisible(), 'the second step offers no passkey (did its script run?)');
    await noSessionCookies('before the second factor');
    const landed = await clickAndLoad(button);
    await appEcho(landed, '/private/third');
    return { url: w.page.url(), cookies: await sessionCookies() };
  }],

  ['logout after the second factor by passkey', async () => {
    const resp = await postLogoutForm();
    await noSessionCookies('after logout');
    return { url: w.page.url(), status: resp ? resp.status() : null };
  }],

  ['signed out: a protected page asks for a login again', async () => {
    await toLoginFrom('/private/hello');
    return { gateway_pages: [...w.gatewayPages].sort() };
  }],
];

async function screenshot(name) {
  if (!w.page) return null;
  const file = path.join(cfg.out, `${name.replace(/[^a-z0-9]+/gi, '-').toLowerCase()}.png`);
  try {
    await w.page.screenshot({ path: file, fullPage: true });
    return file;
  } catch {
    return null;
  }
}

let status = 0;
console.log(JSON.stringify({ plan: steps.map(([name]) => name) }));
for (const [name, run] of steps) {
  const started = Date.now();
  try {
    const detail = (await run()) || {};
    if (w.page) await noProblems();
    console.log(JSON.stringify({ step: name, ok: true, ms: Date.now() - started, ...detail }));
  } catch (e) {
    console.log(
      JSON.stringify({
        step: name,
        ok: false,
        error: e.message,
        url: w.page ? w.page.url() : null,
        screenshot: await screenshot(name),
        problems: w.problems,
      }),
    );
    status = 1;
    break;
  }
}
if (w.browser) await w.browser.close().catch(() => {});
process.exit(status);
