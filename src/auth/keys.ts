import { randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, importJWK, type JWK, type CryptoKey } from 'jose';
import type { Collection } from 'mongodb';

/**
 * The broker's token-signing keys. They live in the database, not in one process, so that every broker process
 * behind the load balancer signs and verifies with the same set (design.md, Scale). Rotation without downtime: a new
 * key (new `kid`) signs once the newest is older than the rotation period; older keys keep verifying until the
 * tokens they signed have expired.
 */
export interface SigningKeyDoc {
  _id: string; // kid
  alg: 'ES256';
  privateJwk: JWK;
  publicJwk: JWK;
  createdAt: Date;
  /** After this, the key only verifies. */
  signUntil: Date;
  /** After this, the key is of no use and may be purged. */
  verifyUntil: Date;
}

/** How long a process trusts its cached view of the keys before reading them again. */
const CACHE_MS = 60_000;

export interface KeyRingOptions {
  rotationMs: number;
  tokenLifetimeMs: number;
  clock?: () => Date;
}

export class KeyRing {
  private signing: { kid: string; key: CryptoKey; signUntil: number; checkedAt: number } | undefined;
  private readonly verifying = new Map<string, { key: CryptoKey; verifyUntil: number; checkedAt: number }>();
  private readonly clock: () => Date;

  constructor(
    private readonly keys: Collection<SigningKeyDoc>,
    private readonly options: KeyRingOptions,
  ) {
    this.clock = options.clock ?? (() => new Date());
  }

  /** The key to sign with now, creating (rotating to) a new one when none is current. */
  async signingKey(): Promise<{ kid: string; key: CryptoKey }> {
    const now = this.clock().getTime();
    // Re-read at least every minute: another process may have rotated the key (see rotate()).
    if (this.signing && this.signing.signUntil > now && now - this.signing.checkedAt < CACHE_MS) return this.signing;
    let doc = await this.keys
      .find({ signUntil: { $gt: new Date(now) } })
      .sort({ createdAt: -1 })
      .limit(1)
      .next();
    if (!doc) doc = await this.createKey(now);
    this.signing = {
      kid: doc._id,
      key: (await importJWK(doc.privateJwk, doc.alg)) as CryptoKey,
      signUntil: doc.signUntil.getTime(),
      checkedAt: now,
    };
    return this.signing;
  }

  /** The public key for a `kid`, looked up in the database when another process created it. */
  async verificationKey(kid: string): Promise<CryptoKey | undefined> {
    const now = this.clock().getTime();
    const cached = this.verifying.get(kid);
    if (cached && now - cached.checkedAt < CACHE_MS) return cached.verifyUntil > now ? cached.key : undefined;
    const doc = await this.keys.findOne({ _id: kid });
    if (!doc || doc.verifyUntil.getTime() <= now) return undefined;
    const key = (await importJWK(doc.publicJwk, doc.alg)) as CryptoKey;
    this.verifying.set(kid, { key, verifyUntil: doc.verifyUntil.getTime(), checkedAt: now });
    return key;
  }

  /** Public keys still in use, for a JWKS document. */
  async publicKeys(): Promise<JWK[]> {
    const docs = await this.keys.find({ verifyUntil: { $gt: this.clock() } }).toArray();
    return docs.map((d) => ({ ...d.publicJwk, kid: d._id, alg: d.alg, use: 'sig' }));
  }

  /**
   * Starts signing with a fresh key now (e.g. after a suspected leak). Old keys keep verifying only as long as the
   * tokens they signed until now live: a leaked key must not mint valid tokens until its planned retirement.
   */
  async rotate(): Promise<string> {
    const now = this.clock().getTime();
    await this.keys.updateMany(
      { signUntil: { $gt: new Date(now) } },
      { $set: { signUntil: new Date(now), verifyUntil: new Date(now + this.options.tokenLifetimeMs + 60_000) } },
    );
    this.signing = undefined;
    this.verifying.clear();
    return (await this.createKey(now))._id;
  }

  async purgeExpired(): Promise<number> {
    return (await this.keys.deleteMany({ verifyUntil: { $lte: this.clock() } })).deletedCount;
  }

  private async createKey(now: number): Promise<SigningKeyDoc> {
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
    const signUntil = now + this.options.rotationMs;
    const doc: SigningKeyDoc = {
      _id: randomUUID(),
      alg: 'ES256',
      privateJwk: await exportJWK(privateKey),
      publicJwk: await exportJWK(publicKey),
      createdAt: new Date(now),
      signUntil: new Date(signUntil),
      verifyUntil: new Date(signUntil + this.options.tokenLifetimeMs + 60_000),
    };
    await this.keys.insertOne(doc);
    return doc;
  }
}
