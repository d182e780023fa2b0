// One-shot id_token forgery at the token endpoint, so that a relying party's
// tests can check that it rejects forged id_tokens. `POST /admin/tamper` arms
// it. The next successful token response of the armed grant type then carries
// a forged id_token built from the genuine one's claims, and the switch
// disarms itself. README.md lists the modes.

import * as crypto from 'node:crypto';

import { SignJWT, base64url, decodeJwt, decodeProtectedHeader, importJWK } from 'jose';

import { generateSigningKey } from './provider.mjs';

// `iss` of the `wrong-issuer` mode: a loopback address on port 1, where no
// provider listens.
export const WRONG_ISSUER = 'http://127.0.0.1:1/oidc';
export const WRONG_AUDIENCE = 'someone-else';
export const EXPIRED_SHIFT_SECONDS = 2 * 60 * 60;
export const FUTURE_IAT_SHIFT_SECONDS = 60 * 60;

// Grant types whose token responses can be rewritten. `authorization_code` is
// the default, so refresh responses stay genuine unless a test requests them.
export const TAMPER_GRANT_TYPES = ['authorization_code', 'refresh_token'];
export const DEFAULT_TAMPER_GRANT_TYPE = 'authorization_code';

// Mode value that disarms the switch. `POST /admin/tamper` accepts it
// besides TAMPER_MODES.
export const TAMPER_OFF = 'off';

// Re-signs `claims` with the provider's current signing key, keeping the
// genuine header, so that only the claims differ from a genuine token.
async function signWithProviderKey(genuineHeader, claims, signingKey) {
  const privateKey = await importJWK(signingKey, 'RS256');
  return new SignJWT(claims)
    .setProtectedHeader({ ...genuineHeader, alg: 'RS256', kid: signingKey.kid })
    .sign(privateKey);
}

// Returns the SPKI PEM text of the public half of an RSA JWK, as Node's
// KeyObject.export writes it (with a trailing newline).
export function publicKeyPem(jwk) {
  const publicKey = crypto.createPublicKey({ key: { kty: jwk.kty, n: jwk.n, e: jwk.e }, format: 'jwk' });
  return publicKey.export({ type: 'spki', format: 'pem' });
}

// Forgers by mode. Each receives the genuine id_token in compact form, its
// decoded header and claims, and the provider's current signing key (a private
// JWK), and returns the forged id_token.
const FORGERS = {
  // Same header and claims, with one byte of the decoded signature inverted.
  'bad-signature': async ({ idToken }) => {
    const [encodedHeader, encodedPayload, encodedSignature] = idToken.split('.');
    const signature = base64url.decode(encodedSignature);
    signature[Math.floor(signature.length / 2)] ^= 0xff;
    return `${encodedHeader}.${encodedPayload}.${base64url.encode(signature)}`;
  },

  // Unsecured JWT (RFC 7519 section 6) with the genuine payload and an empty signature.
  'alg-none': async ({ idToken, header }) => {
    const encodedPayload = idToken.split('.')[1];
    const unsecuredHeader = { alg: 'none', typ: 'JWT', kid: header.kid };
    return `${base64url.encode(JSON.stringify(unsecuredHeader))}.${encodedPayload}.`;
  },

  // Key confusion: HS256 with the PEM text of the provider's RSA public key
  // as the HMAC secret. A verifier that lets the token's `alg` pick the
  // algorithm and passes the PEM it has for the `kid` would accept it.
  'hs256-public-key': async ({ header, claims, signingKey }) => {
    const secret = new TextEncoder().encode(publicKeyPem(signingKey));
    return new SignJWT(claims)
      .setProtectedHeader({ ...header, alg: 'HS256', kid: signingKey.kid })
      .sign(secret);
  },

  'wrong-issuer': ({ header, claims, signingKey }) => (
    signWithProviderKey(header, { ...claims, iss: WRONG_ISSUER }, signingKey)
  ),

  'wrong-audience': ({ header, claims, signingKey }) => (
    signWithProviderKey(header, { ...claims, aud: WRONG_AUDIENCE }, signingKey)
  ),

  expired: ({ header, claims, signingKey }) => (
    signWithProviderKey(header, {
      ...claims,
      iat: claims.iat - EXPIRED_SHIFT_SECONDS,
      exp: claims.exp - EXPIRED_SHIFT_SECONDS,
    }, signingKey)
  ),

  'missing-nonce': ({ header, claims, signingKey }) => {
    const { nonce: _nonce, ...withoutNonce } = claims;
    return signWithProviderKey(header, withoutNonce, signingKey);
  },

  'wrong-nonce': ({ header, claims, signingKey }) => (
    signWithProviderKey(header, { ...claims, nonce: crypto.randomBytes(32).toString('base64url') }, signingKey)
  ),

  // Signed with a new RSA key whose `kid`, its thumbprint, is in no JWKS.
  'unknown-kid': async ({ header, claims }) => {
    const unknownKey = await generateSigningKey();
    return signWithProviderKey(header, claims, unknownKey);
  },

  // `exp` moves by the same hour, so the token keeps its lifetime and only
  // `iat`, which lies in the future, is wrong.
  'future-iat': ({ header, claims, signingKey }) => (
    signWithProviderKey(header, {
      ...claims,
      iat: claims.iat + FUTURE_IAT_SHIFT_SECONDS,
      exp: claims.exp + FUTURE_IAT_SHIFT_SECONDS,
    }, signingKey)
  ),
};

export const TAMPER_MODES = Object.keys(FORGERS);

// Builds the forged id_token for `mode` from the genuine `idToken`.
export function forgeIdToken(mode, idToken, signingKey) {
  const forge = FORGERS[mode];
  if (!forge) {
    throw new TypeError(`unknown tamper mode \`${mode}\`; use one of ${TAMPER_MODES.join(', ')}`);
  }
  return forge({
    idToken,
    header: decodeProtectedHeader(idToken),
    claims: decodeJwt(idToken),
    signingKey,
  });
}

// The armed mode and grant type, shared by the token endpoint middleware of
// every Provider instance that the key rotation creates.
export class IdTokenTamper {
  #armed;
  #log;

  constructor({ log }) {
    this.#log = log;
  }

  arm(mode, grantType = DEFAULT_TAMPER_GRANT_TYPE) {
    if (!FORGERS[mode]) {
      throw new TypeError(`unknown tamper mode \`${mode}\`; use one of ${TAMPER_MODES.join(', ')}`);
    }
    if (!TAMPER_GRANT_TYPES.includes(grantType)) {
      throw new TypeError(`unsupported grant type \`${grantType}\`; use one of ${TAMPER_GRANT_TYPES.join(', ')}`);
    }
    this.#armed = { mode, grantType };
  }

  disarm() {
    this.#armed = undefined;
  }

  // Builds a koa middleware for `provider.use` that rewrites the token
  // response after oidc-provider has built it and before koa serializes it.
  // `signingKey` is the private JWK that this Provider instance signs with.
  middleware(signingKey) {
    return async (ctx, next) => {
      await next();

      const armed = this.#armed;
      if (!armed || ctx.method !== 'POST' || ctx.status !== 200 || ctx.oidc?.route !== 'token') {
        return;
      }
      if (ctx.oidc.params?.grant_type !== armed.grantType || typeof ctx.body?.id_token !== 'string') {
        return;
      }

      // Disarms before the first await, so that two concurrent token
      // responses cannot both take the one shot.
      this.#armed = undefined;
      const clientId = ctx.oidc.client?.clientId ?? '-';
      try {
        ctx.body.id_token = await forgeIdToken(armed.mode, ctx.body.id_token, signingKey);
      } catch (error) {
        // A genuine id_token would make a rejection test pass for the wrong
        // reason, so a failed forgery fails the token request.
        this.#log(`forging an id_token (mode ${armed.mode}) for client ${clientId} failed: ${error.stack ?? error}`);
        ctx.status = 500;
        ctx.body = { error: 'server_error', error_description: `forging the id_token (mode ${armed.mode}) failed; see the provider log` };
        return;
      }
      this.#log(`id_token forged (mode ${armed.mode}) in a ${armed.grantType} response for client ${clientId}; tamper switch disarmed`);
    };
  }
}
