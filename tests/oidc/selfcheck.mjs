// Self-check for server.mjs: starts it on a free port and drives the
// authorization code flow with PKCE the way the app does, with plain fetch
// and a small cookie jar.
//
// Run: node --test tests/oidc/selfcheck.mjs

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose';

const SERVER_PATH = fileURLToPath(new URL('./server.mjs', import.meta.url));
const STARTUP_TIMEOUT_MS = 15_000;
const REQUEST_TIMEOUT_MS = 5_000;
const EXIT_TIMEOUT_MS = 5_000;

const CLIENT_ID = 'selfcheck-app';
const CLIENT_SECRET = 'selfcheck-secret';
const REDIRECT_URI = 'http://127.0.0.1:9/oauth/callback';
const POST_LOGOUT_REDIRECT_URI = 'http://127.0.0.1:9/signed-out';
const ACCESS_TOKEN_TTL_SECONDS = 45;
const RESOURCE = 'urn:databricks:workspace';
const SCOPE = 'openid email profile offline_access all-apis';

const SERVER_ENV = {
  ...process.env,
  OIDC_CLIENT_ID: CLIENT_ID,
  OIDC_CLIENT_SECRET: CLIENT_SECRET,
  OIDC_REDIRECT_URIS: `http://127.0.0.1:9/other,${REDIRECT_URI}`,
  OIDC_POST_LOGOUT_REDIRECT_URIS: POST_LOGOUT_REDIRECT_URI,
  OIDC_ACCESS_TOKEN_TTL: String(ACCESS_TOKEN_TTL_SECONDS),
};

// ---------------------------------------------------------------------------
// Process helpers

// Resolves with the first stdout line of `child` parsed as JSON, or rejects
// when the process exits or the timeout passes first.
function readReadyLine(child, stderrChunks) {
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout });
    const timer = setTimeout(() => {
      reject(new Error(`server printed no ready line within ${STARTUP_TIMEOUT_MS} ms; stderr:\n${stderrChunks.join('')}`));
    }, STARTUP_TIMEOUT_MS);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`server exited (code ${code}, signal ${signal}) before its ready line; stderr:\n${stderrChunks.join('')}`));
    });
    lines.once('line', (line) => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(line));
      } catch (error) {
        reject(new Error(`ready line is not JSON: ${line}`, { cause: error }));
      }
    });
  });
}

function startServer(args = ['--port', '0'], extraEnv = {}) {
  const child = spawn(process.execPath, [SERVER_PATH, ...args], {
    env: { ...SERVER_ENV, ...extraEnv },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stderrChunks = [];
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => stderrChunks.push(chunk));
  return { child, stderrChunks, ready: readReadyLine(child, stderrChunks) };
}

// Resolves with the exit code and signal of `child`, or with undefined after the timeout.
function waitForExit(child, timeoutMs = EXIT_TIMEOUT_MS) {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(undefined), timeoutMs);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal });
    });
  });
}

async function stopServer(child) {
  if (child.exitCode !== null || child.signalCode !== null) {
    return;
  }
  child.kill('SIGTERM');
  if (!await waitForExit(child)) {
    child.kill('SIGKILL');
    await waitForExit(child);
  }
}

// Reports whether a process is gone. A zombie counts as gone, because only
// its parent, which this test does not control, can reap it.
function processIsGone(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state === 'Z' || state === 'X';
  } catch {
    try {
      process.kill(pid, 0);
      return false;
    } catch {
      return true;
    }
  }
}

async function waitUntil(condition, timeoutMs, description) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (condition()) {
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${description}`);
}

// ---------------------------------------------------------------------------
// HTTP helpers

// Stores cookies by name and path, and sends each one on requests under its path.
class CookieJar {
  #cookies = new Map();

  store(response) {
    for (const header of response.headers.getSetCookie()) {
      const [pair, ...attributes] = header.split(';').map((part) => part.trim());
      const separator = pair.indexOf('=');
      const name = pair.slice(0, separator);
      const value = pair.slice(separator + 1);
      let path = '/';
      let expired = false;
      for (const attribute of attributes) {
        const [key, attributeValue = ''] = attribute.split('=');
        switch (key.toLowerCase()) {
          case 'path':
            path = attributeValue;
            break;
          case 'max-age':
            expired ||= Number(attributeValue) <= 0;
            break;
          case 'expires':
            expired ||= Date.parse(attributeValue) <= Date.now();
            break;
          default:
        }
      }
      const key = `${name};${path}`;
      if (expired) {
        this.#cookies.delete(key);
      } else {
        this.#cookies.set(key, { name, value, path });
      }
    }
  }

  headerFor(url) {
    const { pathname } = new URL(url);
    return [...this.#cookies.values()]
      .filter(({ path }) => pathname === path || pathname.startsWith(path.endsWith('/') ? path : `${path}/`))
      .map(({ name, value }) => `${name}=${value}`)
      .join('; ');
  }
}

// Sends one request without following redirects.
async function request(url, { jar, method = 'GET', form, headers = {} } = {}) {
  const requestHeaders = { ...headers };
  const cookie = jar?.headerFor(url);
  if (cookie) {
    requestHeaders.cookie = cookie;
  }
  let body;
  if (form) {
    body = new URLSearchParams(form).toString();
    requestHeaders['content-type'] = 'application/x-www-form-urlencoded';
  }
  const response = await fetch(url, {
    method,
    headers: requestHeaders,
    body,
    redirect: 'manual',
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  jar?.store(response);
  return response;
}

function locationOf(response, base) {
  const location = response.headers.get('location');
  assert.ok(location, `expected a Location header on HTTP ${response.status}`);
  return new URL(location, base);
}

function basicAuth(clientId = CLIENT_ID, clientSecret = CLIENT_SECRET) {
  const credentials = `${encodeURIComponent(clientId)}:${encodeURIComponent(clientSecret)}`;
  return `Basic ${Buffer.from(credentials).toString('base64')}`;
}

function randomToken() {
  return crypto.randomBytes(32).toString('base64url');
}

function pkcePair() {
  const verifier = randomToken();
  const challenge = crypto.hash('sha256', verifier, 'base64url');
  return { verifier, challenge };
}

// ---------------------------------------------------------------------------
// Shared state

let server;
let issuer;
let port;
let metadata;

async function fetchMetadata(issuerUrl) {
  const response = await request(`${issuerUrl}/.well-known/openid-configuration`);
  assert.equal(response.status, 200);
  return response.json();
}

before(async () => {
  server = startServer();
  ({ issuer, port } = await server.ready);
  metadata = await fetchMetadata(issuer);
});

after(async () => {
  if (server) {
    await stopServer(server.child);
  }
});

// The shared server's issuer and discovery document. The helpers below take
// another one to drive a server that a test starts itself.
function sharedProvider() {
  return { issuer, metadata };
}

function authorizationUrl({ state, nonce, challenge, extra = {}, provider = sharedProvider() }) {
  const url = new URL(provider.metadata.authorization_endpoint);
  const params = {
    client_id: CLIENT_ID,
    response_type: 'code',
    redirect_uri: REDIRECT_URI,
    scope: SCOPE,
    state,
    nonce,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    ...extra,
  };
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined) {
      url.searchParams.set(name, value);
    }
  }
  return url;
}

// Signs in as `loginName` through the development login form and returns the
// authorization code with the values needed to redeem it. The steps are the
// ones README.md documents for scripted clients.
async function signIn(loginName, { jar = new CookieJar(), scope = SCOPE, provider = sharedProvider() } = {}) {
  const { issuer: issuerUrl, metadata: providerMetadata } = provider;
  const state = randomToken();
  const nonce = randomToken();
  const { verifier, challenge } = pkcePair();

  // 1. The authorization request redirects to the login interaction.
  const authorize = await request(authorizationUrl({ state, nonce, challenge, extra: { scope }, provider }), { jar });
  assert.equal(authorize.status, 303, 'authorization request status');
  const interactionUrl = locationOf(authorize, issuerUrl);
  assert.match(interactionUrl.pathname, /^\/oidc\/interaction\/[\w-]+$/);

  // 2. The interaction page shows a login form that posts back to the same URL.
  const page = await request(interactionUrl, { jar });
  assert.equal(page.status, 200, 'interaction page status');
  const html = await page.text();
  assert.match(html, /name="login"/);
  assert.match(html, /name="prompt" value="login"/);

  // 3. Posting the form accepts any login name and returns to the authorization endpoint.
  const login = await request(interactionUrl, {
    jar,
    method: 'POST',
    form: { prompt: 'login', login: loginName, password: 'any' },
  });
  assert.equal(login.status, 303, 'login form status');
  const resumeUrl = locationOf(login, issuerUrl);
  assert.ok(
    resumeUrl.pathname.startsWith(new URL(providerMetadata.authorization_endpoint).pathname),
    `login redirects to the authorization endpoint, not ${resumeUrl.pathname}`,
  );

  // 4. Consent is granted automatically, so the next redirect goes to the client.
  const resume = await request(resumeUrl, { jar });
  assert.equal(resume.status, 303, 'authorization resume status');
  const callback = locationOf(resume, issuerUrl);
  assert.equal(`${callback.origin}${callback.pathname}`, REDIRECT_URI);
  assert.equal(callback.searchParams.get('state'), state);
  assert.equal(callback.searchParams.get('iss'), issuerUrl);
  assert.equal(callback.searchParams.get('error'), null, `error ${callback.searchParams.get('error_description')}`);
  const code = callback.searchParams.get('code');
  assert.ok(code, 'callback has a code');

  return { code, verifier, nonce, jar, provider };
}

async function tokenRequest(form, { auth = 'basic', provider = sharedProvider() } = {}) {
  const headers = {};
  const body = { ...form };
  if (auth === 'basic') {
    headers.authorization = basicAuth();
  } else {
    body.client_id = CLIENT_ID;
    body.client_secret = CLIENT_SECRET;
  }
  const response = await request(provider.metadata.token_endpoint, { method: 'POST', form: body, headers });
  return { status: response.status, body: await response.json() };
}

function redeemCode({ code, verifier, provider }, options = {}) {
  return tokenRequest({
    grant_type: 'authorization_code',
    code,
    redirect_uri: REDIRECT_URI,
    code_verifier: verifier,
  }, { provider, ...options });
}

async function fetchJwks(provider = sharedProvider()) {
  const response = await request(provider.metadata.jwks_uri);
  assert.equal(response.status, 200);
  return response.json();
}

async function verifyIdToken(idToken, jwks, nonce) {
  const { payload, protectedHeader } = await jwtVerify(idToken, createLocalJWKSet(jwks), {
    issuer,
    audience: CLIENT_ID,
    algorithms: ['RS256'],
  });
  if (nonce !== undefined) {
    assert.equal(payload.nonce, nonce);
  }
  return { payload, protectedHeader };
}

function verifyAccessToken(accessToken, jwks, expectedIssuer = issuer) {
  return jwtVerify(accessToken, createLocalJWKSet(jwks), {
    issuer: expectedIssuer,
    audience: RESOURCE,
    algorithms: ['RS256'],
    typ: 'at+jwt',
  });
}

// ---------------------------------------------------------------------------
// Tests

test('ready line names the issuer', () => {
  assert.equal(issuer, `http://127.0.0.1:${port}/oidc`);
});

test('discovery matches a Databricks workspace', async () => {
  assert.equal(metadata.issuer, issuer);
  assert.equal(metadata.authorization_endpoint, `${issuer}/v1/authorize`);
  assert.equal(metadata.token_endpoint, `${issuer}/v1/token`);
  assert.equal(metadata.jwks_uri, `${issuer}/jwks`);
  assert.ok(metadata.end_session_endpoint, 'end_session_endpoint is advertised');
  assert.deepEqual(metadata.code_challenge_methods_supported, ['S256']);
  assert.deepEqual(metadata.response_types_supported, ['code']);
  assert.deepEqual(metadata.id_token_signing_alg_values_supported, ['RS256']);
  for (const scope of SCOPE.split(' ')) {
    assert.ok(metadata.scopes_supported.includes(scope), `scopes_supported has ${scope}`);
  }
  for (const method of ['client_secret_basic', 'client_secret_post']) {
    assert.ok(metadata.token_endpoint_auth_methods_supported.includes(method), `supports ${method}`);
  }

  const alias = await request(`${issuer}/.well-known/oauth-authorization-server`);
  assert.equal(alias.status, 200);
  assert.deepEqual(await alias.json(), metadata);
});

test('authorization without PKCE is rejected', async () => {
  const state = randomToken();
  const url = authorizationUrl({ state, nonce: randomToken(), challenge: undefined, extra: { code_challenge_method: undefined } });
  const response = await request(url);
  assert.equal(response.status, 303);
  const callback = locationOf(response, issuer);
  assert.equal(callback.searchParams.get('error'), 'invalid_request');
  assert.equal(callback.searchParams.get('state'), state);
});

test('authorization with PKCE plain is rejected', async () => {
  const verifier = randomToken();
  const url = authorizationUrl({
    state: randomToken(),
    nonce: randomToken(),
    challenge: verifier,
    extra: { code_challenge_method: 'plain' },
  });
  const response = await request(url);
  assert.equal(response.status, 303);
  assert.equal(locationOf(response, issuer).searchParams.get('error'), 'invalid_request');
});

test('unregistered redirect_uri gets no redirect', async () => {
  const { challenge } = pkcePair();
  const url = authorizationUrl({
    state: randomToken(),
    nonce: randomToken(),
    challenge,
    extra: { redirect_uri: 'http://127.0.0.1:9/not-registered' },
  });
  const response = await request(url);
  assert.equal(response.status, 400);
  assert.equal(response.headers.get('location'), null);
});

// Tokens from the first sign-in, used by the refresh and rotation tests below.
let firstTokens;

test('code exchange returns id, access and refresh tokens', async () => {
  const signedIn = await signIn('alice@example.com');
  const { status, body } = await redeemCode(signedIn);
  assert.equal(status, 200, JSON.stringify(body));
  assert.equal(body.token_type, 'Bearer');
  assert.equal(body.expires_in, ACCESS_TOKEN_TTL_SECONDS);
  assert.ok(body.id_token, 'response has id_token');
  assert.ok(body.refresh_token, 'response has refresh_token');
  assert.ok(body.access_token, 'response has access_token');

  const jwks = await fetchJwks();
  const { payload: idClaims, protectedHeader: idHeader } = await verifyIdToken(body.id_token, jwks, signedIn.nonce);
  assert.equal(idHeader.alg, 'RS256');
  assert.equal(idHeader.kid, jwks.keys[0].kid);
  assert.equal(idClaims.sub, 'alice@example.com');
  assert.equal(idClaims.email, 'alice@example.com');
  assert.equal(idClaims.name, 'alice@example.com');
  assert.equal(idClaims.preferred_username, 'alice@example.com');
  assert.ok(idClaims.exp - idClaims.iat <= 60, 'id_token lives at most 60 s');

  const { payload: atClaims, protectedHeader: atHeader } = await verifyAccessToken(body.access_token, jwks);
  assert.equal(atHeader.typ, 'at+jwt');
  assert.equal(atHeader.alg, 'RS256');
  assert.equal(atClaims.sub, 'alice@example.com');
  assert.equal(atClaims.client_id, CLIENT_ID);
  assert.equal(atClaims.exp - atClaims.iat, ACCESS_TOKEN_TTL_SECONDS);
  assert.ok(atClaims.scope.split(' ').includes('all-apis'), `access token scope ${atClaims.scope}`);

  firstTokens = { ...body, jar: signedIn.jar };
});

test('login name without @ gets an example.com email', async () => {
  const signedIn = await signIn('bob');
  const { status, body } = await redeemCode(signedIn);
  assert.equal(status, 200, JSON.stringify(body));
  const { payload } = await verifyIdToken(body.id_token, await fetchJwks(), signedIn.nonce);
  assert.equal(payload.sub, 'bob');
  assert.equal(payload.email, 'bob@example.com');
  assert.equal(payload.preferred_username, 'bob');
});

test('no refresh token without offline_access', async () => {
  const signedIn = await signIn('ivan', { scope: 'openid email profile all-apis' });
  const { status, body } = await redeemCode(signedIn);
  assert.equal(status, 200, JSON.stringify(body));
  assert.ok(body.access_token);
  assert.ok(body.id_token);
  assert.equal(body.refresh_token, undefined);
});

test('existing session skips the login form', async () => {
  const { jar } = await signIn('judy');
  const state = randomToken();
  const { challenge } = pkcePair();
  const response = await request(authorizationUrl({ state, nonce: randomToken(), challenge }), { jar });
  assert.equal(response.status, 303);
  const callback = locationOf(response, issuer);
  assert.equal(`${callback.origin}${callback.pathname}`, REDIRECT_URI);
  assert.equal(callback.searchParams.get('state'), state);
  assert.ok(callback.searchParams.get('code'), 'callback has a code');
});

test('authorization code works once', async () => {
  const signedIn = await signIn('carol');
  const first = await redeemCode(signedIn);
  assert.equal(first.status, 200, JSON.stringify(first.body));
  const second = await redeemCode(signedIn);
  assert.equal(second.status, 400);
  assert.equal(second.body.error, 'invalid_grant');
});

test('wrong code_verifier is rejected', async () => {
  const signedIn = await signIn('dave');
  const wrong = await redeemCode({ ...signedIn, verifier: randomToken() });
  assert.equal(wrong.status, 400);
  assert.equal(wrong.body.error, 'invalid_grant');

  const missing = await tokenRequest({ grant_type: 'authorization_code', code: signedIn.code, redirect_uri: REDIRECT_URI });
  assert.equal(missing.status, 400);
  assert.equal(missing.body.error, 'invalid_grant');
});

test('client_secret_post authenticates the client', async () => {
  const signedIn = await signIn('erin');
  const { status, body } = await redeemCode(signedIn, { auth: 'post' });
  assert.equal(status, 200, JSON.stringify(body));
  assert.ok(body.refresh_token);
});

test('wrong client secret is rejected', async () => {
  const response = await request(metadata.token_endpoint, {
    method: 'POST',
    form: { grant_type: 'refresh_token', refresh_token: 'unused' },
    headers: { authorization: basicAuth(CLIENT_ID, 'wrong-secret') },
  });
  assert.equal(response.status, 401);
  assert.equal((await response.json()).error, 'invalid_client');
});

// Refresh tokens from the refresh test, used by the reuse test.
let rotated;

test('refresh returns a new refresh token', async () => {
  assert.ok(firstTokens, 'needs the code exchange test');
  const { status, body } = await tokenRequest({ grant_type: 'refresh_token', refresh_token: firstTokens.refresh_token });
  assert.equal(status, 200, JSON.stringify(body));
  assert.ok(body.refresh_token);
  assert.notEqual(body.refresh_token, firstTokens.refresh_token);
  assert.ok(body.id_token, 'refresh returns a new id_token');

  const jwks = await fetchJwks();
  const { payload } = await verifyAccessToken(body.access_token, jwks);
  assert.equal(payload.sub, 'alice@example.com');
  assert.ok(payload.scope.split(' ').includes('all-apis'));
  await verifyIdToken(body.id_token, jwks);

  rotated = { old: firstTokens.refresh_token, current: body.refresh_token };
});

test('reused refresh token revokes the grant', async () => {
  assert.ok(rotated, 'needs the refresh test');
  const reuse = await tokenRequest({ grant_type: 'refresh_token', refresh_token: rotated.old });
  assert.equal(reuse.status, 400);
  assert.equal(reuse.body.error, 'invalid_grant');

  // Reuse revokes the whole grant, so the newest refresh token fails too.
  const current = await tokenRequest({ grant_type: 'refresh_token', refresh_token: rotated.current });
  assert.equal(current.status, 400);
  assert.equal(current.body.error, 'invalid_grant');
});

test('admin endpoints accept POST only', async () => {
  const response = await request(`http://127.0.0.1:${port}/admin/rotate-keys`);
  assert.equal(response.status, 405);
  assert.equal(response.headers.get('allow'), 'POST');
});

test('key rotation signs with the new key', async () => {
  const before = await fetchJwks();
  assert.equal(before.keys.length, 1);
  const oldKid = before.keys[0].kid;
  const signedInBefore = await signIn('frank');
  const tokensBefore = (await redeemCode(signedInBefore)).body;

  const rotation = await request(`http://127.0.0.1:${port}/admin/rotate-keys`, { method: 'POST' });
  assert.equal(rotation.status, 200);
  const { signing_kid: newKid, kids } = await rotation.json();
  assert.notEqual(newKid, oldKid);
  assert.deepEqual(kids, [newKid, oldKid]);

  const after = await fetchJwks();
  assert.deepEqual(after.keys.map((key) => key.kid), [newKid, oldKid]);
  for (const key of after.keys) {
    assert.equal(key.d, undefined, 'JWKS publishes public keys only');
  }

  // Tokens signed before the rotation still verify while the old key is published.
  await verifyAccessToken(tokensBefore.access_token, after);

  // A refresh token from before the rotation still works, because grants live in the shared store.
  const refreshed = await tokenRequest({ grant_type: 'refresh_token', refresh_token: tokensBefore.refresh_token });
  assert.equal(refreshed.status, 200, JSON.stringify(refreshed.body));
  assert.equal(decodeProtectedHeader(refreshed.body.access_token).kid, newKid);

  const signedIn = await signIn('grace');
  const { status, body } = await redeemCode(signedIn);
  assert.equal(status, 200, JSON.stringify(body));
  assert.equal(decodeProtectedHeader(body.id_token).kid, newKid);
  assert.equal(decodeProtectedHeader(body.access_token).kid, newKid);
  await verifyIdToken(body.id_token, after, signedIn.nonce);
  await verifyAccessToken(body.access_token, after);

  const drop = await request(`http://127.0.0.1:${port}/admin/rotate-keys?drop_old=1`, { method: 'POST' });
  assert.equal(drop.status, 200);
  const { signing_kid: newestKid, kids: remaining } = await drop.json();
  assert.deepEqual(remaining, [newestKid]);
  const dropped = await fetchJwks();
  assert.deepEqual(dropped.keys.map((key) => key.kid), [newestKid]);
  await assert.rejects(verifyAccessToken(body.access_token, dropped), { code: 'ERR_JWKS_NO_MATCHING_KEY' });
});

// ---------------------------------------------------------------------------
// id_token tamper switch. These tests run after the key rotation, so the
// forgeries that re-sign with the real key also show that the Provider built
// by the rotation has the tamper middleware and signs with the newest key.

const FORGED_ISSUER = 'http://127.0.0.1:1/oidc';
const FORGED_AUDIENCE = 'someone-else';

function postTamper({ query = {}, body } = {}) {
  const url = new URL(`http://127.0.0.1:${port}/admin/tamper`);
  for (const [name, value] of Object.entries(query)) {
    url.searchParams.set(name, value);
  }
  return fetch(url, {
    method: 'POST',
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : (typeof body === 'string' ? body : JSON.stringify(body)),
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
}

async function armTamper(mode, query = {}) {
  const response = await postTamper({ query: { mode, ...query } });
  const body = await response.json();
  assert.equal(response.status, 200, JSON.stringify(body));
  return body;
}

// Signs in and redeems the code, and returns the token response with the nonce of the login.
async function signInForTokens(loginName) {
  const signedIn = await signIn(loginName);
  const { status, body } = await redeemCode(signedIn);
  assert.equal(status, 200, JSON.stringify(body));
  assert.ok(body.id_token, 'response has id_token');
  return { tokens: body, nonce: signedIn.nonce };
}

// Returns the SPKI PEM text of an RSA public JWK, the HMAC secret of the key confusion attack.
function pemOfPublicJwk(jwk) {
  return crypto.createPublicKey({ key: jwk, format: 'jwk' }).export({ type: 'spki', format: 'pem' });
}

// Checks that the forged token keeps the claims of the login it came from.
function assertGenuineClaims(claims, loginName, nonce) {
  assert.equal(claims.sub, loginName);
  assert.equal(claims.iss, issuer);
  assert.equal(claims.aud, CLIENT_ID);
  assert.equal(claims.nonce, nonce);
}

// Per mode: how the forged id_token must look, given the current JWKS with its
// single key.
const TAMPER_CHECKS = {
  'bad-signature': async ({ idToken, jwks, loginName, nonce }) => {
    assert.deepEqual(decodeProtectedHeader(idToken), { alg: 'RS256', kid: jwks.keys[0].kid });
    assertGenuineClaims(decodeJwt(idToken), loginName, nonce);
    await assert.rejects(verifyIdToken(idToken, jwks), { code: 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' });
  },

  'alg-none': async ({ idToken, jwks, loginName, nonce }) => {
    assert.deepEqual(decodeProtectedHeader(idToken), { alg: 'none', typ: 'JWT', kid: jwks.keys[0].kid });
    assert.ok(idToken.endsWith('.'), 'unsecured JWT has an empty signature');
    assert.equal(idToken.split('.').length, 3);
    assertGenuineClaims(decodeJwt(idToken), loginName, nonce);
    await assert.rejects(verifyIdToken(idToken, jwks), { code: 'ERR_JOSE_ALG_NOT_ALLOWED' });
  },

  'hs256-public-key': async ({ idToken, jwks, loginName, nonce }) => {
    assert.deepEqual(decodeProtectedHeader(idToken), { alg: 'HS256', kid: jwks.keys[0].kid });
    await assert.rejects(verifyIdToken(idToken, jwks), { code: 'ERR_JOSE_ALG_NOT_ALLOWED' });
    // The HMAC verifies with the public key's PEM text as the secret.
    const secret = new TextEncoder().encode(pemOfPublicJwk(jwks.keys[0]));
    const { payload } = await jwtVerify(idToken, secret, { issuer, audience: CLIENT_ID, algorithms: ['HS256'] });
    assertGenuineClaims(payload, loginName, nonce);
  },

  'wrong-issuer': async ({ idToken, jwks, loginName }) => {
    assert.equal(decodeProtectedHeader(idToken).kid, jwks.keys[0].kid);
    await assert.rejects(verifyIdToken(idToken, jwks), { code: 'ERR_JWT_CLAIM_VALIDATION_FAILED', claim: 'iss' });
    const { payload } = await jwtVerify(idToken, createLocalJWKSet(jwks), { algorithms: ['RS256'] });
    assert.equal(payload.iss, FORGED_ISSUER);
    assert.equal(payload.sub, loginName);
  },

  'wrong-audience': async ({ idToken, jwks, loginName }) => {
    assert.equal(decodeProtectedHeader(idToken).kid, jwks.keys[0].kid);
    await assert.rejects(verifyIdToken(idToken, jwks), { code: 'ERR_JWT_CLAIM_VALIDATION_FAILED', claim: 'aud' });
    const { payload } = await jwtVerify(idToken, createLocalJWKSet(jwks), { issuer, algorithms: ['RS256'] });
    assert.equal(payload.aud, FORGED_AUDIENCE);
    assert.equal(payload.sub, loginName);
  },

  expired: async ({ idToken, jwks, loginName, nonce }) => {
    assert.equal(decodeProtectedHeader(idToken).kid, jwks.keys[0].kid);
    await assert.rejects(verifyIdToken(idToken, jwks), { code: 'ERR_JWT_EXPIRED' });
    const claims = decodeJwt(idToken);
    const now = Math.floor(Date.now() / 1000);
    assert.ok(claims.exp < now - 60 * 60, `exp ${claims.exp} is over an hour before ${now}`);
    assert.ok(claims.iat < claims.exp, 'iat stays before exp');
    // With the clock set back to just after iat, the signature and the other claims verify.
    const { payload } = await jwtVerify(idToken, createLocalJWKSet(jwks), {
      issuer,
      audience: CLIENT_ID,
      algorithms: ['RS256'],
      currentDate: new Date((claims.iat + 1) * 1000),
    });
    assertGenuineClaims(payload, loginName, nonce);
  },

  'missing-nonce': async ({ idToken, jwks, loginName }) => {
    assert.equal(decodeProtectedHeader(idToken).kid, jwks.keys[0].kid);
    const { payload } = await verifyIdToken(idToken, jwks);
    assert.equal(payload.sub, loginName);
    assert.equal('nonce' in payload, false, 'nonce claim is removed');
  },

  'wrong-nonce': async ({ idToken, jwks, loginName, nonce }) => {
    assert.equal(decodeProtectedHeader(idToken).kid, jwks.keys[0].kid);
    const { payload } = await verifyIdToken(idToken, jwks);
    assert.equal(payload.sub, loginName);
    assert.equal(typeof payload.nonce, 'string');
    assert.notEqual(payload.nonce, nonce);
  },

  'unknown-kid': async ({ idToken, jwks, loginName, nonce }) => {
    const header = decodeProtectedHeader(idToken);
    assert.equal(header.alg, 'RS256');
    assert.ok(header.kid, 'header has a kid');
    assert.ok(!jwks.keys.some((key) => key.kid === header.kid), `kid ${header.kid} is not in the JWKS`);
    assertGenuineClaims(decodeJwt(idToken), loginName, nonce);
    await assert.rejects(verifyIdToken(idToken, jwks), { code: 'ERR_JWKS_NO_MATCHING_KEY' });
  },

  'future-iat': async ({ idToken, jwks, loginName, nonce }) => {
    assert.equal(decodeProtectedHeader(idToken).kid, jwks.keys[0].kid);
    // jose checks `iat` only with maxTokenAge, so the plain check passes.
    const { payload } = await verifyIdToken(idToken, jwks, nonce);
    assertGenuineClaims(payload, loginName, nonce);
    const now = Math.floor(Date.now() / 1000);
    assert.ok(payload.iat > now + 50 * 60, `iat ${payload.iat} is about an hour after ${now}`);
    assert.ok(payload.exp - payload.iat <= 60, 'the lifetime stays at most 60 s');
    await assert.rejects(
      jwtVerify(idToken, createLocalJWKSet(jwks), { algorithms: ['RS256'], maxTokenAge: '2h' }),
      { code: 'ERR_JWT_CLAIM_VALIDATION_FAILED', claim: 'iat' },
    );
  },
};

for (const [mode, check] of Object.entries(TAMPER_CHECKS)) {
  test(`tamper ${mode} forges the id_token`, async () => {
    assert.deepEqual(await armTamper(mode), { armed: mode, grant: 'authorization_code' });
    const loginName = `tamper-${mode}`;
    const { tokens, nonce } = await signInForTokens(loginName);
    const jwks = await fetchJwks();
    assert.equal(jwks.keys.length, 1, 'the rotation test leaves one key');
    await check({ idToken: tokens.id_token, jwks, loginName, nonce });

    // Only the id_token is forged.
    await verifyAccessToken(tokens.access_token, jwks);
    assert.ok(tokens.refresh_token, 'response keeps its refresh token');
  });
}

test('tamper switch fires once', async () => {
  await armTamper('wrong-nonce');
  const forged = await signInForTokens('tamper-once');
  await assert.rejects(verifyIdToken(forged.tokens.id_token, await fetchJwks(), forged.nonce));

  const next = await signInForTokens('tamper-once');
  await verifyIdToken(next.tokens.id_token, await fetchJwks(), next.nonce);
});

test('tamper mode off disarms', async () => {
  await armTamper('bad-signature');
  assert.deepEqual(await armTamper('off'), { armed: 'off' });
  const { tokens, nonce } = await signInForTokens('tamper-off');
  await verifyIdToken(tokens.id_token, await fetchJwks(), nonce);
});

test('tamper leaves refresh alone by default', async () => {
  const { tokens } = await signInForTokens('tamper-refresh-default');
  await armTamper('bad-signature');

  const refreshed = await tokenRequest({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token });
  assert.equal(refreshed.status, 200, JSON.stringify(refreshed.body));
  await verifyIdToken(refreshed.body.id_token, await fetchJwks());

  // The switch stays armed for the next code exchange.
  const exchanged = await signInForTokens('tamper-refresh-default');
  await assert.rejects(verifyIdToken(exchanged.tokens.id_token, await fetchJwks()), {
    code: 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED',
  });
});

test('tamper grant=refresh_token forges refresh', async () => {
  // A JSON body works as well as the query.
  const armed = await postTamper({ body: { mode: 'wrong-nonce', grant: 'refresh_token' } });
  assert.equal(armed.status, 200);
  assert.deepEqual(await armed.json(), { armed: 'wrong-nonce', grant: 'refresh_token' });

  // The code exchange stays genuine.
  const { tokens, nonce } = await signInForTokens('tamper-refresh');
  const jwks = await fetchJwks();
  await verifyIdToken(tokens.id_token, jwks, nonce);

  const refreshed = await tokenRequest({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token });
  assert.equal(refreshed.status, 200, JSON.stringify(refreshed.body));
  const { payload } = await verifyIdToken(refreshed.body.id_token, jwks);
  assert.equal(payload.sub, 'tamper-refresh');
  assert.notEqual(payload.nonce, nonce);

  // One shot: the next refresh is genuine again, and oidc-provider keeps the login's nonce.
  const again = await tokenRequest({ grant_type: 'refresh_token', refresh_token: refreshed.body.refresh_token });
  assert.equal(again.status, 200, JSON.stringify(again.body));
  await verifyIdToken(again.body.id_token, jwks, nonce);
});

test('tamper rejects invalid requests', async () => {
  const cases = [
    { description: 'unknown mode', request: { query: { mode: 'rot13' } } },
    { description: 'missing mode', request: {} },
    { description: 'unknown grant', request: { query: { mode: 'expired', grant: 'client_credentials' } } },
    { description: 'body that is not JSON', request: { body: 'mode=expired' } },
    { description: 'JSON array body', request: { body: ['expired'] } },
    { description: 'non-string mode', request: { body: { mode: 1 } } },
  ];
  for (const { description, request: tamperRequest } of cases) {
    const response = await postTamper(tamperRequest);
    assert.equal(response.status, 400, description);
    assert.equal((await response.json()).error, 'invalid_request', description);
  }

  const get = await request(`http://127.0.0.1:${port}/admin/tamper?mode=expired`);
  assert.equal(get.status, 405);

  // None of the rejected requests armed the switch.
  const { tokens, nonce } = await signInForTokens('tamper-invalid');
  await verifyIdToken(tokens.id_token, await fetchJwks(), nonce);
});

test('logout redirects to the post-logout URI', async () => {
  const signedIn = await signIn('heidi');
  const { body } = await redeemCode(signedIn);
  assert.ok(body.refresh_token);
  const state = randomToken();
  const endSession = new URL(metadata.end_session_endpoint);
  endSession.searchParams.set('id_token_hint', body.id_token);
  endSession.searchParams.set('post_logout_redirect_uri', POST_LOGOUT_REDIRECT_URI);
  endSession.searchParams.set('state', state);

  const page = await request(endSession, { jar: signedIn.jar });
  assert.equal(page.status, 200);
  const html = await page.text();
  const action = html.match(/<form id="op.logoutForm" method="post" action="([^"]+)"/)?.[1];
  const xsrf = html.match(/name="xsrf" value="([^"]+)"/)?.[1];
  assert.ok(action, 'logout page has a form');
  assert.ok(xsrf, 'logout form has an xsrf value');

  const confirm = await request(action, { jar: signedIn.jar, method: 'POST', form: { xsrf, logout: 'yes' } });
  assert.equal(confirm.status, 303);
  const target = locationOf(confirm, issuer);
  assert.equal(`${target.origin}${target.pathname}`, POST_LOGOUT_REDIRECT_URI);
  assert.equal(target.searchParams.get('state'), state);

  // A grant with offline_access outlives the session.
  const refreshed = await tokenRequest({ grant_type: 'refresh_token', refresh_token: body.refresh_token });
  assert.equal(refreshed.status, 200, JSON.stringify(refreshed.body));

  // The session is gone, so a new authorization request requires a login again.
  const { challenge } = pkcePair();
  const again = await request(authorizationUrl({ state: randomToken(), nonce: randomToken(), challenge }), { jar: signedIn.jar });
  assert.equal(again.status, 303);
  assert.match(locationOf(again, issuer).pathname, /^\/oidc\/interaction\//);
});

test('access token TTL of 2 s works', async () => {
  const shortLived = startServer(['--port', '0'], { OIDC_ACCESS_TOKEN_TTL: '2' });
  try {
    const { issuer: shortIssuer } = await shortLived.ready;
    const provider = { issuer: shortIssuer, metadata: await fetchMetadata(shortIssuer) };
    const signedIn = await signIn('kate', { provider });
    const { status, body } = await redeemCode(signedIn);
    assert.equal(status, 200, JSON.stringify(body));
    assert.equal(body.expires_in, 2);
    const jwks = await fetchJwks(provider);
    const { payload } = await verifyAccessToken(body.access_token, jwks, shortIssuer);
    assert.equal(payload.exp - payload.iat, 2);

    // The refresh token works after the access token has expired.
    const waitMs = payload.exp * 1000 - Date.now() + 200;
    await new Promise((resolve) => setTimeout(resolve, Math.max(waitMs, 0)));
    await assert.rejects(verifyAccessToken(body.access_token, jwks, shortIssuer), { code: 'ERR_JWT_EXPIRED' });
    const refreshed = await tokenRequest(
      { grant_type: 'refresh_token', refresh_token: body.refresh_token },
      { provider },
    );
    assert.equal(refreshed.status, 200, JSON.stringify(refreshed.body));
    assert.equal(refreshed.body.expires_in, 2);
    const { payload: refreshedPayload } = await verifyAccessToken(refreshed.body.access_token, jwks, shortIssuer);
    assert.equal(refreshedPayload.exp - refreshedPayload.iat, 2);
  } finally {
    await stopServer(shortLived.child);
  }
});

test('server exits when its parent dies', async () => {
  // A shell starts the server in the background and is then killed, which
  // re-parents the server.
  const shell = spawn('/bin/sh', ['-c', `"${process.execPath}" "${SERVER_PATH}" --port 0 & echo "$!"; wait`], {
    env: SERVER_ENV,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  try {
    const lines = createInterface({ input: shell.stdout });
    const firstTwoLines = new Promise((resolve, reject) => {
      const received = [];
      const timer = setTimeout(() => {
        reject(new Error(`timed out after ${STARTUP_TIMEOUT_MS} ms waiting for the server pid and ready line`));
      }, STARTUP_TIMEOUT_MS);
      lines.on('line', (line) => {
        received.push(line);
        if (received.length === 2) {
          clearTimeout(timer);
          resolve(received);
        }
      });
    });
    const received = await firstTwoLines;
    const pid = Number(received.find((line) => /^\d+$/.test(line)));
    const ready = JSON.parse(received.find((line) => line.startsWith('{')));
    assert.ok(pid > 0, `server pid from ${JSON.stringify(received)}`);
    assert.ok(ready.port > 0);

    shell.kill('SIGKILL');
    await waitUntil(() => processIsGone(pid), EXIT_TIMEOUT_MS, `server ${pid} to exit after its parent died`);
  } finally {
    shell.kill('SIGKILL');
  }
});

test('SIGTERM stops the server with exit code 0', async () => {
  const extra = startServer();
  const { port: extraPort } = await extra.ready;
  assert.ok(extraPort > 0);
  extra.child.kill('SIGTERM');
  const exit = await waitForExit(extra.child);
  if (!exit) {
    extra.child.kill('SIGKILL');
  }
  assert.deepEqual(exit, { code: 0, signal: null });
});

test('POST /admin/shutdown stops the server', async () => {
  const response = await request(`http://127.0.0.1:${port}/admin/shutdown`, { method: 'POST' });
  assert.equal(response.status, 200);
  const exit = await waitForExit(server.child);
  assert.deepEqual(exit, { code: 0, signal: null });
});
