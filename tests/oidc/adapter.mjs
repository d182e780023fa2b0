// In-memory storage adapter for oidc-provider that outlives one Provider
// instance. Key rotation replaces the Provider, and sessions, grants, codes and
// refresh tokens must survive that, so every Provider built by this server
// shares one AdapterStore.
//
// oidc-provider's bundled MemoryAdapter keeps at most 1,000 entries in an LRU
// cache, so a long test run could lose a grant or a session to eviction. This
// store evicts only on expiry.

const GRANTABLE_MODELS = new Set([
  'AccessToken',
  'AuthorizationCode',
  'RefreshToken',
  'DeviceCode',
  'BackchannelAuthenticationRequest',
  'PreAuthorizedCode',
]);

const SWEEP_INTERVAL_MS = 60_000;

export class AdapterStore {
  // Model key (`Model:id`) -> { payload, expiresAt }, with expiresAt in ms or Infinity.
  #entries = new Map();
  // grantId -> Set of model keys issued under that grant.
  #grantMembers = new Map();
  // Session uid -> session id.
  #sessionIds = new Map();
  // Device flow user code -> device code id.
  #userCodes = new Map();
  #sweepTimer;

  constructor() {
    this.#sweepTimer = setInterval(() => this.sweep(), SWEEP_INTERVAL_MS);
    this.#sweepTimer.unref();
  }

  adapterFactory() {
    return (model) => new SharedMemoryAdapter(model, this);
  }

  get(key) {
    const entry = this.#entries.get(key);
    if (!entry) {
      return undefined;
    }
    if (entry.expiresAt <= Date.now()) {
      this.delete(key);
      return undefined;
    }
    return entry.payload;
  }

  set(key, payload, expiresInSeconds) {
    const expiresAt = typeof expiresInSeconds === 'number'
      ? Date.now() + expiresInSeconds * 1000
      : Infinity;
    this.#entries.set(key, { payload, expiresAt });
  }

  delete(key) {
    const entry = this.#entries.get(key);
    this.#entries.delete(key);
    if (!entry) {
      return;
    }

    const { payload } = entry;
    if (payload.grantId) {
      this.#grantMembers.get(payload.grantId)?.delete(key);
    }
    if (payload.uid && this.#sessionIds.get(payload.uid) === key) {
      this.#sessionIds.delete(payload.uid);
    }
    if (payload.userCode && this.#userCodes.get(payload.userCode) === key) {
      this.#userCodes.delete(payload.userCode);
    }
  }

  indexGrantMember(grantId, key) {
    let members = this.#grantMembers.get(grantId);
    if (!members) {
      members = new Set();
      this.#grantMembers.set(grantId, members);
    }
    members.add(key);
  }

  grantMembers(grantId) {
    return [...(this.#grantMembers.get(grantId) ?? [])];
  }

  indexSession(uid, key) {
    this.#sessionIds.set(uid, key);
  }

  sessionKey(uid) {
    return this.#sessionIds.get(uid);
  }

  indexUserCode(userCode, key) {
    this.#userCodes.set(userCode, key);
  }

  userCodeKey(userCode) {
    return this.#userCodes.get(userCode);
  }

  // Drops expired entries, so that a long-running server does not grow without bound.
  sweep() {
    const now = Date.now();
    for (const [key, entry] of this.#entries) {
      if (entry.expiresAt <= now) {
        this.delete(key);
      }
    }
    for (const [grantId, members] of this.#grantMembers) {
      if (members.size === 0) {
        this.#grantMembers.delete(grantId);
      }
    }
  }

  close() {
    clearInterval(this.#sweepTimer);
  }
}

// Implements the adapter interface that oidc-provider calls for one model
// (`Session`, `Grant`, `RefreshToken`, ...). Payloads are copied on the way in
// and out, so that a caller can only change stored state through `upsert` and
// `consume`.
class SharedMemoryAdapter {
  constructor(model, store) {
    this.model = model;
    this.store = store;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    const key = this.key(id);
    this.store.delete(key);
    this.store.set(key, structuredClone(payload), expiresIn);

    if (GRANTABLE_MODELS.has(this.model) && payload.grantId) {
      this.store.indexGrantMember(payload.grantId, key);
    }
    if (this.model === 'Session' && payload.uid) {
      this.store.indexSession(payload.uid, key);
    }
    if (payload.userCode) {
      this.store.indexUserCode(payload.userCode, key);
    }
  }

  async find(id) {
    const payload = this.store.get(this.key(id));
    return payload === undefined ? undefined : structuredClone(payload);
  }

  async findByUid(uid) {
    const key = this.store.sessionKey(uid);
    const payload = key === undefined ? undefined : this.store.get(key);
    return payload === undefined ? undefined : structuredClone(payload);
  }

  async findByUserCode(userCode) {
    const key = this.store.userCodeKey(userCode);
    const payload = key === undefined ? undefined : this.store.get(key);
    return payload === undefined ? undefined : structuredClone(payload);
  }

  async consume(id) {
    const payload = this.store.get(this.key(id));
    if (payload) {
      payload.consumed = Math.floor(Date.now() / 1000);
    }
  }

  async destroy(id) {
    this.store.delete(this.key(id));
  }

  // Deletes every instance of this adapter's model that was issued under the grant.
  async revokeByGrantId(grantId) {
    const prefix = `${this.model}:`;
    for (const key of this.store.grantMembers(grantId)) {
      if (key.startsWith(prefix)) {
        this.store.delete(key);
      }
    }
  }
}
