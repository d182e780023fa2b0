// OpenID provider for tests and the local demo, configured like a Databricks
// workspace. It mounts oidc-provider under `/oidc` of a node:http server on
// 127.0.0.1 and prints one JSON line, `{"issuer":...,"port":...}`, on stdout
// when it is ready. See README.md for the settings and the admin endpoints.

import * as crypto from 'node:crypto';
import * as http from 'node:http';
import { parseArgs } from 'node:util';

import { AdapterStore } from './adapter.mjs';
import { createProvider, generateSigningKey } from './provider.mjs';
import {
  DEFAULT_TAMPER_GRANT_TYPE,
  IdTokenTamper,
  TAMPER_GRANT_TYPES,
  TAMPER_MODES,
  TAMPER_OFF,
} from './tamper.mjs';

const HOST = '127.0.0.1';
const MOUNT_PATH = '/oidc';
const PARENT_POLL_INTERVAL_MS = 500;
const SHUTDOWN_TIMEOUT_MS = 2_000;
const MAX_ADMIN_BODY_BYTES = 16 * 1024;

// oidc-provider prints its notices with console.info, which writes to stdout.
// A test harness reads stdout for the ready line, so notices go to stderr.
console.info = console.error;
console.log = console.error;

function logLine(message) {
  process.stderr.write(`oidc: ${message}\n`);
}

function fail(message) {
  logLine(`error: ${message}`);
  process.exit(2);
}

function parsePort(value, source) {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    fail(`invalid port \`${value}\` in ${source}; use a number from 0 to 65535 (0 picks a free port)`);
  }
  return port;
}

function parsePositiveSeconds(value, source) {
  const seconds = Number(value);
  if (!Number.isInteger(seconds) || seconds <= 0) {
    fail(`invalid number of seconds \`${value}\` in ${source}; use a whole number greater than 0`);
  }
  return seconds;
}

function parseUriList(value, source) {
  const uris = value.split(',').map((uri) => uri.trim()).filter(Boolean);
  if (uris.length === 0) {
    fail(`missing URIs in ${source}; give a comma-separated list of absolute URIs`);
  }
  for (const uri of uris) {
    if (!URL.canParse(uri)) {
      fail(`invalid URI \`${uri}\` in ${source}; give absolute URIs such as \`http://127.0.0.1:8080/oauth/callback\``);
    }
  }
  return uris;
}

function readSettings() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        port: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (error) {
    fail(`${error.message}; run \`node server.mjs --help\` for the options`);
  }
  if (values.help) {
    process.stderr.write(
      'usage: node server.mjs [--port N]\n'
      + '  --port N  TCP port on 127.0.0.1 (default: $OIDC_PORT, else 0, which picks a free port)\n'
      + 'Environment variables are listed in README.md.\n',
    );
    process.exit(0);
  }

  const env = process.env;
  const port = values.port !== undefined
    ? parsePort(values.port, '`--port`')
    : parsePort(env.OIDC_PORT ?? '0', '`OIDC_PORT`');

  return {
    port,
    accessTokenTtlSeconds: parsePositiveSeconds(env.OIDC_ACCESS_TOKEN_TTL ?? '60', '`OIDC_ACCESS_TOKEN_TTL`'),
    client: {
      clientId: env.OIDC_CLIENT_ID || 'local-app',
      clientSecret: env.OIDC_CLIENT_SECRET || 'local-secret',
      redirectUris: parseUriList(
        env.OIDC_REDIRECT_URIS ?? 'http://127.0.0.1:8080/oauth/callback',
        '`OIDC_REDIRECT_URIS`',
      ),
      postLogoutRedirectUris: parseUriList(
        env.OIDC_POST_LOGOUT_REDIRECT_URIS ?? 'http://127.0.0.1:8080/',
        '`OIDC_POST_LOGOUT_REDIRECT_URIS`',
      ),
    },
  };
}

// Owner of the current Provider, which it replaces when the signing keys
// change. oidc-provider reads its keys only in the constructor, so a key
// rotation builds a new Provider over the same adapter store and cookie keys,
// and with the same id_token tamper switch.
class ProviderHost {
  #issuer;
  #options;
  #tamper;
  #signingKeys;
  #callback;

  constructor(issuer, options, signingKeys, tamper) {
    this.#issuer = issuer;
    this.#options = options;
    this.#tamper = tamper;
    this.#install(signingKeys);
  }

  get signingKeyIds() {
    return this.#signingKeys.map((key) => key.kid);
  }

  handle(req, res) {
    return this.#callback(req, res);
  }

  async rotateKeys({ dropOld }) {
    const newKey = await generateSigningKey();
    const keys = dropOld ? [newKey] : [newKey, ...this.#signingKeys];
    this.#install(keys);
    return newKey.kid;
  }

  #install(signingKeys) {
    const provider = createProvider(this.#issuer, { ...this.#options, signingKeys });
    for (const event of ['server_error', 'authorization.error', 'grant.error', 'end_session.error']) {
      // Logs the error code and oidc-provider's description of the failed
      // check, not the request parameters, which contain codes and tokens.
      provider.on(event, (ctx, error) => {
        const client = ctx?.oidc?.client?.clientId ?? '-';
        const details = [error.error_description, error.error_detail].filter(Boolean).join('; ');
        const stack = event === 'server_error' && error.stack ? `\n${error.stack}` : '';
        logLine(`${event} for client ${client}: ${error.message}${details ? `: ${details}` : ''}${stack}`);
      });
    }
    provider.on('grant.revoked', (_ctx, grantId) => logLine(`grant revoked: ${grantId}`));
    // The provider signs with the first key, so forgeries that need the real
    // key re-sign with that one.
    provider.use(this.#tamper.middleware(signingKeys[0]));

    this.#signingKeys = signingKeys;
    this.#callback = provider.callback();
  }
}

function sendJson(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}

function sendInvalidRequest(res, description) {
  logLine(`admin request rejected: ${description}`);
  sendJson(res, 400, { error: 'invalid_request', error_description: description });
}

// Reads a JSON object from the request body. An empty body counts as `{}`.
// Returns undefined after sending a 400 or 413 response.
async function readJsonObject(req, res) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > MAX_ADMIN_BODY_BYTES) {
      logLine(`admin request rejected: request body exceeds ${MAX_ADMIN_BODY_BYTES} bytes`);
      sendJson(res, 413, { error: 'invalid_request', error_description: `request body exceeds ${MAX_ADMIN_BODY_BYTES} bytes` });
      return undefined;
    }
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (text === '') {
    return {};
  }

  let body;
  try {
    body = JSON.parse(text);
  } catch (error) {
    sendInvalidRequest(res, `request body is not valid JSON (${error.message}); send an object such as {"mode":"bad-signature"}`);
    return undefined;
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    sendInvalidRequest(res, 'request body must be a JSON object such as {"mode":"bad-signature"}');
    return undefined;
  }
  return body;
}

// Arms or disarms the id_token tamper switch. `mode` and `grant` come from the
// query or from a JSON body, and a query parameter wins over the body field.
async function handleTamper(req, res, url, tamper) {
  const body = await readJsonObject(req, res);
  if (body === undefined) {
    return;
  }
  const mode = url.searchParams.get('mode') ?? body.mode;
  const grantType = url.searchParams.get('grant') ?? body.grant ?? DEFAULT_TAMPER_GRANT_TYPE;
  const modeList = [...TAMPER_MODES, TAMPER_OFF].join(', ');

  if (mode === undefined) {
    sendInvalidRequest(res, `missing \`mode\`; use one of ${modeList}`);
    return;
  }
  if (mode === TAMPER_OFF) {
    tamper.disarm();
    logLine('tamper switch disarmed');
    sendJson(res, 200, { armed: TAMPER_OFF });
    return;
  }
  if (!TAMPER_MODES.includes(mode)) {
    sendInvalidRequest(res, `invalid \`mode\` ${JSON.stringify(mode)}; use one of ${modeList}`);
    return;
  }
  if (!TAMPER_GRANT_TYPES.includes(grantType)) {
    sendInvalidRequest(res, `invalid \`grant\` ${JSON.stringify(grantType)}; use one of ${TAMPER_GRANT_TYPES.join(', ')}`);
    return;
  }

  tamper.arm(mode, grantType);
  logLine(`tamper switch armed: mode ${mode} for the next ${grantType} token response`);
  sendJson(res, 200, { armed: mode, grant: grantType });
}

function isLoopback(address) {
  return address === '127.0.0.1' || address === '::ffff:127.0.0.1' || address === '::1';
}

async function handleAdmin(req, res, url, { providerHost, tamper, shutdown }) {
  if (!isLoopback(req.socket.remoteAddress)) {
    sendJson(res, 403, { error: 'forbidden', error_description: 'admin endpoints accept requests from 127.0.0.1 only' });
    return;
  }
  if (req.method !== 'POST') {
    res.setHeader('allow', 'POST');
    sendJson(res, 405, { error: 'method_not_allowed', error_description: `use POST for ${url.pathname}` });
    return;
  }

  switch (url.pathname) {
    case '/admin/rotate-keys': {
      const dropOld = ['1', 'true'].includes(url.searchParams.get('drop_old') ?? '');
      const signingKid = await providerHost.rotateKeys({ dropOld });
      logLine(`signing key rotated to kid ${signingKid}; ${providerHost.signingKeyIds.length} key(s) published`);
      sendJson(res, 200, { signing_kid: signingKid, kids: providerHost.signingKeyIds });
      return;
    }
    case '/admin/tamper':
      await handleTamper(req, res, url, tamper);
      return;
    case '/admin/shutdown':
      sendJson(res, 200, { status: 'shutting down' });
      res.on('finish', () => shutdown('POST /admin/shutdown'));
      return;
    default:
      sendJson(res, 404, { error: 'not_found', error_description: `no admin endpoint at ${url.pathname}` });
  }
}

// Serves the provider under MOUNT_PATH. oidc-provider derives the mount path
// from `req.originalUrl` minus `req.url`, as it does under Express.
function handleProvider(req, res, url, providerHost) {
  // Databricks SDKs read the workspace metadata from this RFC 8414 path, and
  // oidc-provider serves the same document as OpenID discovery.
  if (url.pathname === `${MOUNT_PATH}/.well-known/oauth-authorization-server`) {
    req.url = `${MOUNT_PATH}/.well-known/openid-configuration${url.search}`;
  }
  req.originalUrl = req.url;
  req.url = req.url.slice(MOUNT_PATH.length) || '/';
  return providerHost.handle(req, res);
}

// Logs the path only, because query strings carry codes and state values.
function logRequest(req, res, pathname, startedAt) {
  const elapsedMs = Number(process.hrtime.bigint() - startedAt) / 1e6;
  logLine(`${req.method} ${pathname} ${res.statusCode} ${elapsedMs.toFixed(1)}ms`);
}

async function main() {
  const settings = readSettings();
  const store = new AdapterStore();
  const tamper = new IdTokenTamper({ log: logLine });
  let providerHost;
  let shuttingDown = false;

  const server = http.createServer(async (req, res) => {
    const startedAt = process.hrtime.bigint();
    const url = new URL(req.url, `http://${HOST}`);
    res.on('finish', () => logRequest(req, res, url.pathname, startedAt));
    try {
      if (!providerHost) {
        sendJson(res, 503, { error: 'temporarily_unavailable', error_description: 'the provider is starting; retry after the ready line' });
      } else if (url.pathname.startsWith('/admin/')) {
        await handleAdmin(req, res, url, { providerHost, tamper, shutdown });
      } else if (url.pathname === MOUNT_PATH || url.pathname.startsWith(`${MOUNT_PATH}/`)) {
        await handleProvider(req, res, url, providerHost);
      } else {
        sendJson(res, 404, { error: 'not_found', error_description: `the provider is mounted at ${MOUNT_PATH}` });
      }
    } catch (error) {
      logLine(`request ${req.method} ${url.pathname} failed: ${error.stack ?? error}`);
      if (!res.headersSent) {
        sendJson(res, 500, { error: 'server_error', error_description: 'request failed; see the provider log' });
      } else {
        res.destroy();
      }
    }
  });

  function shutdown(reason) {
    if (shuttingDown) {
      return;
    }
    shuttingDown = true;
    logLine(`stopping (${reason})`);
    store.close();
    server.close(() => process.exit(0));
    server.closeAllConnections();
    setTimeout(() => {
      logLine(`stop timed out after ${SHUTDOWN_TIMEOUT_MS} ms; exiting`);
      process.exit(0);
    }, SHUTDOWN_TIMEOUT_MS).unref();
  }

  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));

  // When the parent process dies, this process is re-parented, so a changed
  // ppid means that the test run that started the server is gone. The local
  // demo starts the server to outlive its script, so it turns this off with
  // OIDC_EXIT_WITH_PARENT=0.
  if (process.env.OIDC_EXIT_WITH_PARENT !== '0') {
    const parentPid = process.ppid;
    setInterval(() => {
      if (process.ppid !== parentPid) {
        shutdown(`parent process ${parentPid} exited`);
      }
    }, PARENT_POLL_INTERVAL_MS).unref();
  }

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(settings.port, HOST, () => {
      server.off('error', reject);
      resolve();
    });
  }).catch((error) => fail(`cannot listen on ${HOST}:${settings.port}: ${error.message}`));

  const { port } = server.address();
  const issuer = `http://${HOST}:${port}${MOUNT_PATH}`;
  providerHost = new ProviderHost(
    issuer,
    {
      client: settings.client,
      accessTokenTtlSeconds: settings.accessTokenTtlSeconds,
      adapterFactory: store.adapterFactory(),
      cookieKeys: [crypto.randomBytes(32).toString('base64url')],
    },
    [await generateSigningKey()],
    tamper,
  );

  logLine(
    `listening at ${issuer} for client \`${settings.client.clientId}\`, `
    + `access token TTL ${settings.accessTokenTtlSeconds} s, signing kid ${providerHost.signingKeyIds[0]}`,
  );
  process.stdout.write(`${JSON.stringify({ issuer, port })}\n`);
}

main().catch((error) => fail(error.stack ?? String(error)));
