// oidc-provider configuration that imitates the OpenID provider of a
// Databricks workspace in the user-to-machine (U2M) OAuth flow: authorization
// code with PKCE S256, scopes `all-apis` and `offline_access`, single-use
// refresh tokens and RS256 JWT access tokens.

import * as crypto from 'node:crypto';

import { calculateJwkThumbprint } from 'jose';
import Provider, { errors, interactionPolicy } from 'oidc-provider';

// Resource indicator (RFC 8707) used when a request names none. It becomes the
// `aud` claim of every access token.
export const DEFAULT_RESOURCE = 'urn:databricks:workspace';

const ID_TOKEN_TTL_SECONDS = 60;
const AUTHORIZATION_CODE_TTL_SECONDS = 60;
const INTERACTION_TTL_SECONDS = 10 * 60;
const SESSION_TTL_SECONDS = 24 * 60 * 60;
const REFRESH_TOKEN_TTL_SECONDS = 14 * 24 * 60 * 60;
const GRANT_TTL_SECONDS = REFRESH_TOKEN_TTL_SECONDS;

// Scope of the workspace APIs, which access tokens carry in their `scope`
// claim. Databricks U2M clients request `all-apis offline_access`.
const RESOURCE_SCOPE = 'all-apis';

// Databricks serves these two endpoints at `/oidc/v1/authorize` and `/oidc/v1/token`.
const AUTHORIZATION_PATH = '/v1/authorize';
const TOKEN_PATH = '/v1/token';

// Generates an RS256 signing key as a private JWK whose `kid` is its RFC 7638
// thumbprint.
export async function generateSigningKey() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  const kid = await calculateJwkThumbprint(jwk);
  return { ...jwk, kid, alg: 'RS256', use: 'sig' };
}

// Builds the account that oidc-provider's `findAccount` returns for a login
// name. Any name is accepted, and the name is also the subject identifier.
function accountFor(loginName) {
  const email = loginName.includes('@') ? loginName : `${loginName}@example.com`;
  return {
    accountId: loginName,
    async claims() {
      return {
        sub: loginName,
        email,
        email_verified: true,
        name: loginName,
        preferred_username: loginName,
      };
    },
  };
}

// Loads the client's grant or creates one, and adds every scope and claim of
// the current authorization request to it. The consent prompt is then never
// needed, so the flow is login followed by the redirect to the client, as for
// a Databricks app connection that was already approved.
async function loadOrCreateGrant(ctx) {
  const { oidc } = ctx;
  const { Grant } = oidc.provider;
  const accountId = oidc.account.accountId;
  const clientId = oidc.client.clientId;

  const grantId = oidc.result?.consent?.grantId || oidc.session.grantIdFor(clientId);
  let grant = grantId ? await Grant.find(grantId) : undefined;
  if (!grant || grant.accountId !== accountId || grant.clientId !== clientId) {
    grant = new Grant({ accountId, clientId });
  }

  const oidcScopes = [...oidc.requestParamOIDCScopes];
  if (oidcScopes.length > 0) {
    grant.addOIDCScope(oidcScopes.join(' '));
  }
  if (oidc.requestParamClaims.size > 0) {
    grant.addOIDCClaims([...oidc.requestParamClaims]);
  }
  for (const [indicator, resourceServer] of Object.entries(oidc.resourceServers)) {
    const resourceScopes = [...oidc.requestParamScopes].filter((scope) => resourceServer.scopes.has(scope));
    if (resourceScopes.length > 0) {
      grant.addResourceScope(indicator, resourceScopes.join(' '));
    }
  }

  await grant.save();
  return grant;
}

// Builds the interaction policy: oidc-provider's default, except that
// `prompt=consent` no longer forces the consent page. Consent is granted
// automatically, and keepOfflineAccess adds `prompt=consent` to requests.
function buildInteractionPolicy() {
  const policy = interactionPolicy.base();
  policy.get('consent').checks.remove('consent_prompt');
  return policy;
}

// oidc-provider 9.13 removes `offline_access` from every authorization request
// whose `prompt` lacks `consent`, before any configuration hook runs, so `issueRefreshToken` could never tell that the scope was
// requested. This middleware adds `consent` to `prompt` when a GET
// authorization request includes `offline_access`, as Databricks clients do
// without a prompt. A request with `prompt=none` stays as it is.
// NOTE: POST and pushed authorization requests are not rewritten, so they keep
// `offline_access` only with an explicit `prompt=consent`.
async function keepOfflineAccess(ctx, next) {
  if (ctx.method === 'GET' && ctx.path === AUTHORIZATION_PATH) {
    const { scope, prompt } = ctx.query;
    const scopes = typeof scope === 'string' ? scope.split(' ') : [];
    const prompts = typeof prompt === 'string' ? prompt.split(' ').filter(Boolean) : [];
    if (scopes.includes('offline_access') && !prompts.includes('consent') && !prompts.includes('none')) {
      // oidc-provider finds its mount path by locating `ctx.url` inside
      // `req.originalUrl`, so both must change together.
      const { originalUrl } = ctx.req;
      const urlStart = originalUrl ? originalUrl.indexOf(ctx.url) : -1;
      const mountPath = urlStart > 0 ? originalUrl.slice(0, urlStart) : '';
      ctx.query = { ...ctx.query, prompt: [...prompts, 'consent'].join(' ') };
      if (originalUrl) {
        ctx.req.originalUrl = `${mountPath}${ctx.url}`;
      }
    }
  }
  await next();
}

// Builds a new configuration object on every call, because the Provider
// constructor consumes `jwks` and `clients` from the object it is given.
function buildConfiguration({ client, signingKeys, cookieKeys, adapterFactory, accessTokenTtlSeconds }) {
  const resourceServer = {
    scope: RESOURCE_SCOPE,
    audience: DEFAULT_RESOURCE,
    accessTokenTTL: accessTokenTtlSeconds,
    accessTokenFormat: 'jwt',
    jwt: { sign: { alg: 'RS256' } },
  };

  return {
    adapter: adapterFactory,
    clients: [
      {
        client_id: client.clientId,
        client_secret: client.clientSecret,
        redirect_uris: client.redirectUris,
        post_logout_redirect_uris: client.postLogoutRedirectUris,
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        // A client registered for either secret method may use both.
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
    // Only the authorization code flow, which also drops the implicit grant from discovery.
    responseTypes: ['code'],
    // oidc-provider signs with the first matching key, so the newest key comes first.
    jwks: { keys: signingKeys },
    cookies: { keys: cookieKeys },
    // The resource server's `scope` is what keeps `all-apis` in the request
    // and puts it into access tokens. Listing it here also advertises it in
    // discovery's `scopes_supported`.
    scopes: ['openid', 'offline_access', RESOURCE_SCOPE],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'],
    },
    findAccount: async (_ctx, sub) => accountFor(sub),
    loadExistingGrant: loadOrCreateGrant,
    pkce: { required: () => true },
    // By default, oidc-provider 9.13 rotates a confidential client's refresh
    // token only after 70% of its lifetime. With rotation on every use, presenting a
    // used refresh token again revokes the whole grant.
    rotateRefreshToken: true,
    issueRefreshToken: async (_ctx, oauthClient, code) => (
      oauthClient.grantTypeAllowed('refresh_token') && code.scopes.has('offline_access')
    ),
    interactions: { policy: buildInteractionPolicy() },
    features: {
      devInteractions: { enabled: true },
      rpInitiatedLogout: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => DEFAULT_RESOURCE,
        // Without this, a token request that names no resource and requests
        // `openid` gets an opaque access token for the userinfo endpoint.
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, indicator) => {
          if (indicator !== DEFAULT_RESOURCE) {
            throw new errors.InvalidTarget(`unknown resource indicator; use ${DEFAULT_RESOURCE}`);
          }
          return resourceServer;
        },
      },
    },
    routes: {
      authorization: AUTHORIZATION_PATH,
      token: TOKEN_PATH,
    },
    ttl: {
      AccessToken: accessTokenTtlSeconds,
      AuthorizationCode: AUTHORIZATION_CODE_TTL_SECONDS,
      Grant: GRANT_TTL_SECONDS,
      IdToken: ID_TOKEN_TTL_SECONDS,
      Interaction: INTERACTION_TTL_SECONDS,
      RefreshToken: REFRESH_TOKEN_TTL_SECONDS,
      Session: SESSION_TTL_SECONDS,
    },
  };
}

// Creates a Provider for `issuer`. Call it again with new `signingKeys` to
// rotate keys, passing the same `adapterFactory` and `cookieKeys` so that
// sessions and tokens stay valid.
export function createProvider(issuer, options) {
  const provider = new Provider(issuer, buildConfiguration(options));
  provider.use(keepOfflineAccess);
  return provider;
}
