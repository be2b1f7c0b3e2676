/**
 * The SQLite store: organisations, keys, models, credits and the usage log. It knows nothing of HTTP.
 *
 * Credits for requests in flight are held in memory, not written: admission checks the balance less
 * what this process already holds, and the settlement is the request's one write transaction (charge,
 * allotment counters, usage row together). A crash therefore loses nothing a user paid for — held
 * credits were never taken — and there is nothing to refund at start-up. The holds are per process:
 * run one gateway per database (rate-limit windows are per process too).
 */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { displayPrefix, generateCredentials, hashSecret, newId, secretMatches, type NewCredentials } from '../lib/credentials';
import type { LimitSet, ModelCategory, ModelEntry, Principal } from '../lib/types';
import { periodOf, quotaExceeded, type AllotmentCheck, type AllotmentHold } from '../lib/limits/allotments';
import { GatewayError } from '../lib/errors';
import { migrate } from './migrations';

export interface OrgRow {
  id: string;
  name: string;
  /** Null means unlimited. */
  balanceMicro: number | null;
  createdAt: string;
}

export interface KeyListing {
  clientKey: string;
  name: string;
  orgName: string;
  apiKeyPrefix: string;
  createdAt: string;
  revokedAt: string | null;
}

export interface CreatedKey extends NewCredentials {
  org: OrgRow;
}

export interface ModelInput {
  name: string;
  ollamaModel: string;
  category?: ModelCategory;
  inputMicroPer1k?: number;
  outputMicroPer1k?: number;
  maxOutputTokens?: number | null;
  tokenizer?: string | null;
  imageTokens?: number | null;
}

export interface UsageRecord {
  requestId: string;
  route: string;
  principal: Principal | null;
  model: string | null;
  promptTokens: number;
  completionTokens: number;
  costMicro: number;
  status: number;
  errorCode: string | null;
  latencyMs: number;
}

export interface Reservation {
  /** Null when no money is at stake (an unlimited organisation without allotments). */
  id: number | null;
  orgId: string;
  amountMicro: number;
  /** Allotment counters that hold `amountMicro` until settle (see lib/limits/allotments.ts). */
  allotments?: AllotmentHold[];
}

/** Limits to set on a key or an organisation; an omitted field stays as it is, null removes the limit. */
export type LimitChanges = Partial<LimitSet>;

export interface KeyLimitChanges extends LimitChanges {
  allowedModels?: string[] | null;
  expiresAt?: string | null;
}

interface PrincipalRow {
  keyId: number;
  clientKey: string;
  keyName: string;
  orgId: string;
  orgName: string;
  secretHash: Buffer;
  keyRpm: number | null;
  keyTpm: number | null;
  keyDaily: number | null;
  keyMonthly: number | null;
  orgRpm: number | null;
  orgTpm: number | null;
  orgDaily: number | null;
  orgMonthly: number | null;
  allowedModels: string | null;
  expiresAt: string | null;
}

interface ModelRow {
  name: string;
  ollama_model: string;
  category: ModelCategory;
  input_micro_1k: number;
  output_micro_1k: number;
  max_output_tokens: number | null;
  tokenizer: string | null;
  image_tokens: number | null;
}

const now = (): string => new Date().toISOString();

function toModelEntry(row: ModelRow): ModelEntry {
  return {
    name: row.name,
    ollamaModel: row.ollama_model,
    category: row.category,
    inputMicroPer1k: row.input_micro_1k,
    outputMicroPer1k: row.output_micro_1k,
    maxOutputTokens: row.max_output_tokens,
    tokenizer: row.tokenizer,
    imageTokens: row.image_tokens,
    configured: true,
  };
}

export interface StoreOptions {
  /** Told when writing settlements failed; they are kept and tried again shortly. */
  onWriteError?: (err: unknown) => void;
  /**
   * How long a write waits for another connection's lock before SQLite gives up with SQLITE_BUSY
   * (default 5 s, for the admin CLI). The wait blocks the event loop, so the server sets it short:
   * its settlements are kept and retried on a timer anyway.
   */
  busyTimeoutMs?: number;
  /**
   * How long settlements wait to share a commit (0, the default: until the end of the event-loop
   * turn). A commit costs about the same whatever it holds, so under light load, where each turn has
   * one request, a few milliseconds let several share it. Reads through the store write first anyway.
   */
  commitWindowMs?: number;
}

/** The server's lock wait: long enough for the CLI's short transactions, short enough not to stall streams. */
export const SERVER_BUSY_TIMEOUT_MS = 250;

/**
 * The server's commit window. A crash can lose the usage rows and charges of these last milliseconds
 * (never a user's credits: holds live in memory); the commit was 0.13 ms of the 1.3 ms a request cost
 * at one connection (bench/README.md). 20 rather than 5 ms: at one connection (~1 ms a request) a
 * commit then serves ~20 requests instead of ~5, −3 to −5 % of the gateway's CPU a request there.
 */
export const SERVER_COMMIT_WINDOW_MS = 20;

/** The settings the server runs with (server/main.ts; the tests' harness runs the same). */
export const SERVER_STORE_OPTIONS: Readonly<StoreOptions> = { busyTimeoutMs: SERVER_BUSY_TIMEOUT_MS, commitWindowMs: SERVER_COMMIT_WINDOW_MS };

/** The lock wait for work done at start (refunding an older version's reservations), before any request runs. */
const STARTUP_BUSY_TIMEOUT_MS = 5_000;

export class Store {
  private readonly connection: Database.Database;
  private readonly stmts;
  /** Keys and models as last read: every request reads them, an operator rarely changes them. */
  private readonly lookups: LookupCache;

  constructor(
    file: string,
    private readonly options: StoreOptions = {},
  ) {
    if (file !== ':memory:') fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    this.connection = new Database(file);
    // WAL lets the admin CLI read and write while the server runs; NORMAL sync is durable across
    // process crashes (only an OS crash can lose the last commits) and keeps per-request writes cheap.
    this.connection.pragma('journal_mode = WAL');
    this.connection.pragma('synchronous = NORMAL');
    this.connection.pragma('foreign_keys = ON');
    this.connection.pragma(`busy_timeout = ${Math.max(0, Math.floor(options.busyTimeoutMs ?? 5000))}`);
    // Migrations run at start, before any request: they wait for a lock as the CLI would.
    this.withBusyTimeout(STARTUP_BUSY_TIMEOUT_MS, () => migrate(this.connection));
    this.lookups = new LookupCache(this.connection);
    this.stmts = this.prepare();
    this.limitStmts = this.prepareLimits();
    this.countedScopes = new Set(this.connection.prepare<[], string>('SELECT DISTINCT scope FROM allotment_spend').pluck().all());
  }

  /** Statements for limits and allotments (kept apart from the core ones). */
  private prepareLimits() {
    const db = this.connection;
    const seed = (column: 'key_id' | 'org_id') =>
      db.prepare<{ scope: string; period: string; holder: string | number; start: string; end: string }>(
        // A counter starts at what the usage log already billed in its period, so an allotment set
        // mid-day still counts the day's earlier spend.
        `INSERT OR IGNORE INTO allotment_spend (scope, period, spent_micro)
         VALUES (@scope, @period, (SELECT COALESCE(SUM(cost_micro), 0) FROM usage WHERE ${column} = @holder AND ts >= @start AND ts < @end))`,
      );
    return {
      seedKeyAllotment: seed('key_id'),
      seedOrgAllotment: seed('org_id'),
      allotmentSpent: db.prepare<[string, string], { spent: number }>(
        `SELECT spent_micro AS spent FROM allotment_spend WHERE scope = ? AND period = ?`,
      ),
      addAllotment: db.prepare(`UPDATE allotment_spend SET spent_micro = MAX(0, spent_micro + ?) WHERE scope = ? AND period = ?`),
      addToCounters: db.prepare(`UPDATE allotment_spend SET spent_micro = spent_micro + ? WHERE scope IN (?, ?) AND period IN (?, ?)`),
      reservationAllotments: db.prepare<[], { id: number; allotments: string | null }>(`SELECT id, allotments FROM reservations`),
      keyIdByClientKey: db.prepare<[string], { id: number }>(`SELECT id FROM keys WHERE client_key = ?`),
    };
  }

  private readonly limitStmts;

  private prepare() {
    const db = this.connection;
    const principalColumns = `k.id AS keyId, k.client_key AS clientKey, k.name AS keyName,
      o.id AS orgId, o.name AS orgName, k.secret_hash AS secretHash,
      k.rpm AS keyRpm, k.tpm AS keyTpm, k.daily_micro AS keyDaily, k.monthly_micro AS keyMonthly,
      o.rpm AS orgRpm, o.tpm AS orgTpm, o.daily_micro AS orgDaily, o.monthly_micro AS orgMonthly,
      k.allowed_models AS allowedModels, k.expires_at AS expiresAt`;
    return {
      principalByClientKey: db.prepare<[string], PrincipalRow>(
        `SELECT ${principalColumns} FROM keys k JOIN orgs o ON o.id = k.org_id
         WHERE k.client_key = ? AND k.revoked_at IS NULL`,
      ),
      principalByApiKeyHash: db.prepare<[Buffer], PrincipalRow>(
        `SELECT ${principalColumns} FROM keys k JOIN orgs o ON o.id = k.org_id
         WHERE k.api_key_hash = ? AND k.revoked_at IS NULL`,
      ),
      orgByName: db.prepare<[string], OrgRow>(
        `SELECT id, name, balance_micro AS balanceMicro, created_at AS createdAt FROM orgs WHERE name = ?`,
      ),
      orgById: db.prepare<[string], OrgRow>(
        `SELECT id, name, balance_micro AS balanceMicro, created_at AS createdAt FROM orgs WHERE id = ?`,
      ),
      insertOrg: db.prepare(`INSERT INTO orgs (id, name, balance_micro, created_at) VALUES (?, ?, ?, ?)`),
      setBalance: db.prepare(`UPDATE orgs SET balance_micro = ? WHERE id = ?`),
      addBalance: db.prepare(
        `UPDATE orgs SET balance_micro = balance_micro + ? WHERE id = ? AND balance_micro IS NOT NULL`,
      ),
      // Never below zero, even if an operator lowered the balance while the request ran.
      chargeBalance: db.prepare(
        `UPDATE orgs SET balance_micro = MAX(0, balance_micro - ?) WHERE id = ? AND balance_micro IS NOT NULL`,
      ),
      insertKey: db.prepare(
        `INSERT INTO keys (client_key, name, org_id, secret_hash, api_key_hash, api_key_prefix, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?)`,
      ),
      listKeys: db.prepare<[], KeyListing>(
        `SELECT k.client_key AS clientKey, k.name, o.name AS orgName, k.api_key_prefix AS apiKeyPrefix,
                k.created_at AS createdAt, k.revoked_at AS revokedAt
         FROM keys k JOIN orgs o ON o.id = k.org_id ORDER BY k.id`,
      ),
      revokeKey: db.prepare(`UPDATE keys SET revoked_at = ? WHERE client_key = ? AND revoked_at IS NULL`),
      modelByName: db.prepare<[string], ModelRow>(`SELECT * FROM models WHERE name = ?`),
      listModels: db.prepare<[], ModelRow>(`SELECT * FROM models ORDER BY name`),
      upsertModel: db.prepare(
        `INSERT INTO models (name, ollama_model, category, input_micro_1k, output_micro_1k, max_output_tokens, tokenizer, image_tokens, created_at)
         VALUES (@name, @ollamaModel, @category, @input, @output, @maxOutput, @tokenizer, @imageTokens, @createdAt)
         ON CONFLICT(name) DO UPDATE SET ollama_model = excluded.ollama_model, category = excluded.category,
           input_micro_1k = excluded.input_micro_1k, output_micro_1k = excluded.output_micro_1k,
           max_output_tokens = excluded.max_output_tokens, tokenizer = excluded.tokenizer, image_tokens = excluded.image_tokens`,
      ),
      removeModel: db.prepare(`DELETE FROM models WHERE name = ?`),
      deleteReservation: db.prepare(`DELETE FROM reservations WHERE id = ?`),
      orphanReservations: db.prepare<[], { id: number; org_id: string; amount_micro: number }>(
        `SELECT id, org_id, amount_micro FROM reservations`,
      ),
      insertUsage: db.prepare(
        `INSERT INTO usage (ts, request_id, org_id, key_id, route, model, prompt_tokens, completion_tokens,
                            cost_micro, status, error_code, latency_ms)
         VALUES (@ts, @requestId, @orgId, @keyId, @route, @model, @promptTokens, @completionTokens,
                 @costMicro, @status, @errorCode, @latencyMs)`,
      ),
    };
  }

  /** The connection, with every pending settlement written first (the CLI, reports and tests read it). */
  get db(): Database.Database {
    this.flush();
    return this.connection;
  }

  close(): void {
    // A locked database gets a few more tries (each waits up to busy_timeout) before the rest is given up.
    for (let attempt = 0; attempt < CLOSE_WRITE_ATTEMPTS && this.pendingWrites.length > 0 && this.connection.open; attempt++) this.flush();
    this.cancelFlush();
    if (this.pendingWrites.length > 0) {
      this.reportLost(this.pendingWrites, 'the database stayed locked until shutdown');
      this.pendingWrites = [];
    }
    if (this.connection.open) this.connection.close();
  }

  // ---- organisations -------------------------------------------------------------------------

  getOrgByName(name: string): OrgRow | undefined {
    this.flushForRead();
    return this.available(this.stmts.orgByName.get(name));
  }

  /** The organisation with what it can spend now: its balance less the credits its requests in flight hold. */
  getOrg(id: string): OrgRow | undefined {
    this.flushForRead();
    return this.available(this.stmts.orgById.get(id));
  }

  private available(org: OrgRow | undefined): OrgRow | undefined {
    if (!org || org.balanceMicro === null) return org;
    const held = this.heldCredits.get(org.id) ?? 0;
    // Never below zero, even when an operator took credits away while requests were in flight.
    return held === 0 ? org : { ...org, balanceMicro: Math.max(0, org.balanceMicro - held) };
  }

  createOrg(name: string, balanceMicro: number | null): OrgRow {
    const org: OrgRow = { id: newId('org'), name, balanceMicro, createdAt: now() };
    this.stmts.insertOrg.run(org.id, org.name, org.balanceMicro, org.createdAt);
    return org;
  }

  /** Sets a balance outright; null makes the organisation unlimited. */
  setBalance(orgId: string, balanceMicro: number | null): void {
    this.stmts.setBalance.run(balanceMicro, orgId);
    this.lookups.delete(orgKey(orgId));
  }

  /** Tops up (or, with a negative amount, takes away) credits. An unlimited org becomes limited at `amount`. */
  addCredits(orgId: string, amountMicro: number): OrgRow {
    return this.connection
      .transaction(() => {
        const org = this.stmts.orgById.get(orgId); // the stored balance: credits held in flight are not taken yet
        if (!org) throw new Error(`no organisation ${orgId}`);
        const next = (org.balanceMicro ?? 0) + amountMicro;
        if (next < 0) throw new RangeError(`balance would go below zero (${org.balanceMicro ?? 0} + ${amountMicro})`);
        this.stmts.setBalance.run(next, orgId);
        this.lookups.delete(orgKey(orgId));
        return { ...org, balanceMicro: next };
      })
      .immediate();
  }

  // ---- keys ----------------------------------------------------------------------------------

  /** Creates a key, and its organisation when `orgName` names none yet (or is omitted). */
  createKey(input: { name: string; orgName?: string; balanceMicro?: number | null }): CreatedKey {
    return this.connection
      .transaction((): CreatedKey => {
        const orgName = input.orgName ?? input.name;
        let org = this.stmts.orgByName.get(orgName);
        if (!org) org = this.createOrg(orgName, input.balanceMicro ?? null);
        else if (input.balanceMicro !== undefined) {
          this.setBalance(org.id, input.balanceMicro);
          org = { ...org, balanceMicro: input.balanceMicro };
        }
        const creds = generateCredentials();
        this.stmts.insertKey.run(
          creds.clientKey,
          input.name,
          org.id,
          hashSecret(creds.clientSecret),
          hashSecret(creds.apiKey),
          displayPrefix(creds.apiKey),
          now(),
        );
        return { ...creds, org };
      })
      .immediate();
  }

  listKeys(): KeyListing[] {
    return this.stmts.listKeys.all();
  }

  revokeKey(clientKey: string): boolean {
    this.lookups.clear();
    return this.stmts.revokeKey.run(now(), clientKey).changes === 1;
  }

  /** The principal for a client key + secret pair, or undefined (unknown, revoked, or wrong secret). */
  authenticateClient(clientKey: string, clientSecret: string): Principal | undefined {
    this.lookups.checkNow();
    const row = this.lookups.get(`client:${clientKey}`, () => this.stmts.principalByClientKey.get(clientKey));
    // Hash and compare even when the key is unknown, so timing does not tell which half was wrong.
    const ok = secretMatches(clientSecret, row?.secretHash ?? DUMMY_HASH) && row !== undefined;
    return ok ? stripHash(row) : undefined;
  }

  /** The principal for an api_key bearer token, looked up by its hash. */
  authenticateApiKey(apiKey: string): Principal | undefined {
    this.lookups.checkNow();
    const hash = hashSecret(apiKey);
    const row = this.lookups.get(`api:${hash.toString('base64')}`, () => this.stmts.principalByApiKeyHash.get(hash));
    return row ? stripHash(row) : undefined;
  }

  // ---- models --------------------------------------------------------------------------------

  getModel(name: string): ModelEntry | undefined {
    const row = this.lookups.get(`model:${name}`, () => this.stmts.modelByName.get(name));
    return row ? toModelEntry(row) : undefined;
  }

  /**
   * The model table, kept like single look-ups (requests for an Ollama model under its own name look
   * for an alias of it here). Read-only to callers: the same array is handed out until a change.
   */
  listModels(): readonly ModelEntry[] {
    return this.lookups.get('models:all', () => this.stmts.listModels.all().map(toModelEntry)) ?? [];
  }

  setModel(input: ModelInput): ModelEntry {
    this.lookups.clear();
    this.stmts.upsertModel.run({
      name: input.name,
      ollamaModel: input.ollamaModel,
      category: input.category ?? 'chat',
      input: input.inputMicroPer1k ?? 0,
      output: input.outputMicroPer1k ?? 0,
      maxOutput: input.maxOutputTokens ?? null,
      tokenizer: input.tokenizer ?? null,
      imageTokens: input.imageTokens ?? null,
      createdAt: now(),
    });
    return this.getModel(input.name) as ModelEntry;
  }

  removeModel(name: string): boolean {
    this.lookups.clear();
    return this.stmts.removeModel.run(name).changes === 1;
  }

  // ---- credits -------------------------------------------------------------------------------

  /** Credits held by requests in flight, per organisation (micro-credits). */
  private readonly heldCredits = new Map<string, number>();
  /** The same holds on allotment counters, per `scope|period`. */
  private readonly heldAllotments = new Map<string, number>();
  /** Reservations not yet settled, so money moves and a hold is released exactly once. */
  private readonly open = new Set<number>();
  /**
   * The keys and organisations (`key:1`, `org:x`) with an allotment counter in the database: made by
   * this store when a request first meets an allotment, or before it started. A settlement for anyone
   * else has no counter to add to, and skips the statement (most keys have no allotment).
   */
  private readonly countedScopes: Set<string>;
  /** Settlements waiting for this event-loop turn's commit. */
  private pendingWrites: PendingSettlement[] = [];
  private flushTimer: NodeJS.Immediate | NodeJS.Timeout | null = null;
  /** A write found the database locked and waits for its retry timer. */
  private retrying = false;
  private nextReservationId = 1;

  /**
   * Holds `amountMicro` of the organisation's balance (and of its key's and its own allotments) for a
   * request about to run, or returns undefined when the balance less what is already held cannot
   * cover it. Only reads: nothing is written until settle. Unlimited organisations without
   * allotments get a reservation that holds nothing.
   */
  reserve(orgId: string, amountMicro: number, allotments: readonly AllotmentCheck[] = []): Reservation | undefined {
    if (this.pendingWrites.length === 0 || this.retrying) return this.hold(orgId, amountMicro, allotments);
    // Settlements not yet written still hold their whole reservation; before refusing, write them
    // and look again, so a refusal is never an artefact of the grouped commit.
    try {
      const reservation = this.hold(orgId, amountMicro, allotments);
      if (reservation) return reservation;
    } catch (err) {
      // Only a spent allotment may be an artefact of the grouped commit; anything else (a busy
      // database) is the answer as it is, not a reason to wait on the lock again.
      if (!(err instanceof GatewayError) || err.code !== 'quota_exceeded') throw err;
    }
    this.flush();
    return this.hold(orgId, amountMicro, allotments);
  }

  private hold(orgId: string, amountMicro: number, allotments: readonly AllotmentCheck[]): Reservation | undefined {
    // The stored balance, kept between this store's own charges (and other connections' changes).
    const org = this.available(this.lookups.get(orgKey(orgId), () => this.stmts.orgById.get(orgId)));
    if (!org) return undefined;
    if (org.balanceMicro === null && allotments.length === 0) return { id: null, orgId, amountMicro: 0 };
    if (org.balanceMicro !== null && org.balanceMicro < amountMicro) return undefined;
    const holds = this.checkAllotments(allotments, amountMicro); // throws quota_exceeded
    const id = this.nextReservationId++;
    this.open.add(id);
    addTo(this.heldCredits, orgId, amountMicro);
    for (const hold of holds) addTo(this.heldAllotments, allotmentKey(hold), amountMicro);
    return holds.length > 0 ? { id, orgId, amountMicro, allotments: holds } : { id, orgId, amountMicro };
  }


  /** Throws quota_exceeded for the first allotment that cannot take `amountMicro` more; else the counters to hold. */
  private checkAllotments(checks: readonly AllotmentCheck[], amountMicro: number): AllotmentHold[] {
    for (const check of checks) {
      let spent = this.limitStmts.allotmentSpent.get(check.scope, check.period)?.spent;
      if (spent === undefined) {
        // First request of the period: seed the counter from the usage log (a scan, so only once),
        // with every settled request in it (unless a locked database is being retried: no second wait).
        this.flushForRead();
        const seed = check.holder.kind === 'key' ? this.limitStmts.seedKeyAllotment : this.limitStmts.seedOrgAllotment;
        try {
          seed.run({ scope: check.scope, period: check.period, holder: check.holder.id, start: check.periodStart, end: new Date(check.resetAt).toISOString() });
        } catch (err) {
          // Another connection holds the write lock past the server's short wait: a moment's refusal
          // (503, retry shortly), not an internal error.
          if (isLocked(err)) throw new GatewayError('overloaded', 'The database is busy for a moment; retry shortly.', { retryAfterSeconds: 1, cause: err });
          throw err;
        }
        spent = this.limitStmts.allotmentSpent.get(check.scope, check.period)?.spent ?? 0;
      }
      this.countedScopes.add(check.scope);
      spent += this.heldAllotments.get(allotmentKey(check)) ?? 0;
      if (spent >= check.limitMicro || spent + amountMicro > check.limitMicro) throw quotaExceeded(check, spent);
    }
    return checks.map(({ scope, period }) => ({ scope, period }));
  }

  /**
   * Charges `chargeMicro` (at most what was held) to the balance and the allotment counters and writes
   * the usage row — together, in one transaction — and then lets the hold go. The write is grouped
   * with the other settlements of the same event-loop turn (one commit for all of them); until it is
   * written the hold stays, so admissions meanwhile only err on the safe side. Anything that reads
   * balances or the usage log through this store sees it written first.
   */
  settle(reservation: Reservation | null, chargeMicro: number, usage: UsageRecord): void {
    // Settled once: a second call for the same reservation writes its usage row but moves no money.
    const first = reservation !== null && reservation.id !== null && this.open.delete(reservation.id);
    this.enqueue({
      reservation: first ? reservation : null,
      chargeMicro: first ? Math.max(0, Math.min(chargeMicro, reservation.amountMicro)) : 0,
      usage,
      admittedAt: admittedAt(usage),
    });
  }

  /** A usage row for a request that moved no money (refused, failed before reserving, free route). */
  recordUsage(usage: UsageRecord): void {
    this.enqueue({ reservation: null, chargeMicro: 0, usage, admittedAt: admittedAt(usage) });
  }

  /** Writes every settlement still waiting for its turn's commit (reads and close call this first). */
  flush(): void {
    this.cancelFlush();
    const batch = this.pendingWrites;
    if (batch.length === 0) return;
    this.pendingWrites = [];
    if (!this.connection.open) return this.reportLost(batch, 'the database is closed');
    try {
      this.writeSettlements(batch);
    } catch (err) {
      if (isLocked(err)) return this.retryLater(batch, err);
      // Not a lock: some row is refused for good (or the disk is). One at a time, so that one bad
      // settlement cannot hold up everyone else's.
      return this.writeOneByOne(batch);
    }
    this.retrying = false;
    for (const write of batch) if (write.reservation) this.release(write.reservation);
  }

  private writeOneByOne(batch: readonly PendingSettlement[]): void {
    for (const [i, write] of batch.entries()) {
      try {
        this.writeSettlements([write]);
      } catch (err) {
        if (isLocked(err)) return this.retryLater(batch.slice(i), err);
        // Dropped: nothing is charged for it and its hold goes (the user is never charged twice
        // or charged for nothing); the report carries the row so an operator can replay it.
        this.reportLost([write], `the database refused it (${err instanceof Error ? err.message : String(err)})`);
      }
      if (write.reservation) this.release(write.reservation);
    }
    this.retrying = false;
  }

  /** The database is locked (e.g. a long admin transaction): keep rows and holds, and try again shortly. */
  private retryLater(writes: readonly PendingSettlement[], err: unknown): void {
    this.pendingWrites = writes.concat(this.pendingWrites);
    this.retrying = true;
    this.flushTimer = setTimeout(() => this.flush(), RETRY_WRITE_MS);
    this.flushTimer.unref(); // the server keeps the process alive; a retry alone must not
    this.options.onWriteError?.(err);
  }

  private reportLost(writes: readonly PendingSettlement[], why: string): void {
    const rows = writes.map(({ usage, chargeMicro }) => ({
      requestId: usage.requestId,
      orgId: usage.principal?.orgId ?? null,
      keyId: usage.principal?.keyId ?? null,
      model: usage.model,
      promptTokens: usage.promptTokens,
      completionTokens: usage.completionTokens,
      chargeMicro,
      status: usage.status,
    }));
    this.options.onWriteError?.(new Error(`${writes.length} settlement(s) not written, ${why}: ${JSON.stringify(rows)}`));
  }

  /** Reads write pending settlements first, except while a locked database is being retried (that would block). */
  private flushForRead(): void {
    if (!this.retrying) this.flush();
  }

  private enqueue(write: PendingSettlement): void {
    this.pendingWrites.push(write);
    if (this.pendingWrites.length >= MAX_SETTLEMENTS_PER_COMMIT && !this.retrying) this.flush();
    else if (!this.flushTimer) this.flushTimer = this.scheduleFlush();
  }

  private scheduleFlush(): NodeJS.Immediate | NodeJS.Timeout {
    const windowMs = this.options.commitWindowMs ?? 0;
    if (windowMs <= 0) return setImmediate(() => this.flush());
    const timer = setTimeout(() => this.flush(), windowMs);
    timer.unref(); // close() writes what is left; a pending commit alone must not keep the process up
    return timer;
  }

  private cancelFlush(): void {
    if (!this.flushTimer) return;
    if ('refresh' in this.flushTimer) clearTimeout(this.flushTimer); // only timeouts can be refreshed
    else clearImmediate(this.flushTimer);
    this.flushTimer = null;
  }

  private writeSettlements(batch: readonly PendingSettlement[]): void {
    // Built once: better-sqlite3 prepares BEGIN/COMMIT statements for every transaction() it makes.
    this.settlementTransaction ??= this.connection.transaction((writes: readonly PendingSettlement[]) => {
      for (const { reservation, chargeMicro, usage, admittedAt: at } of writes) {
        if (reservation && chargeMicro > 0) {
          this.stmts.chargeBalance.run(chargeMicro, reservation.orgId);
          this.lookups.delete(orgKey(reservation.orgId));
          const held = reservation.allotments ?? [];
          for (const hold of held) this.limitStmts.addAllotment.run(chargeMicro, hold.scope, hold.period);
          if (usage.principal) this.addToUnheldCounters(usage.principal, at, chargeMicro, held);
        }
        this.insertUsage(usage, at);
      }
    });
    this.settlementTransaction.immediate(batch);
  }

  private settlementTransaction: Database.Transaction<(writes: readonly PendingSettlement[]) => void> | undefined;

  /**
   * A charge also goes to the allotment counters of its period that exist but that the request did not
   * hold: an allotment set (or set again) while it was in flight made its counter from the usage log,
   * which did not have this request yet. Only existing counters are touched; one made later starts from
   * the usage log, which then has this row.
   */
  private addToUnheldCounters(principal: Principal, at: number, chargeMicro: number, held: readonly AllotmentHold[]): void {
    const scopes = [`key:${principal.keyId}`, `org:${principal.orgId}`];
    if (!this.countedScopes.has(scopes[0] as string) && !this.countedScopes.has(scopes[1] as string)) return;
    const periods = [periodOf('daily', at).id, periodOf('monthly', at).id];
    if (held.length === 0) {
      this.limitStmts.addToCounters.run(chargeMicro, scopes[0], scopes[1], periods[0], periods[1]);
      return;
    }
    for (const scope of scopes) {
      for (const period of periods) {
        if (!held.some((h) => h.scope === scope && h.period === period)) this.limitStmts.addAllotment.run(chargeMicro, scope, period);
      }
    }
  }

  private release(reservation: Reservation): void {
    addTo(this.heldCredits, reservation.orgId, -reservation.amountMicro);
    for (const hold of reservation.allotments ?? []) addTo(this.heldAllotments, allotmentKey(hold), -reservation.amountMicro);
  }

  /**
   * Refunds reservation rows written by versions before holds moved into memory, which took the
   * credits at admission; a crash of such a version left them set aside. Run at start-up, before serving.
   */
  refundOrphanReservations(): number {
    // At start, nothing runs yet: wait for a lock as long as the CLI would rather than fail the start.
    return this.withBusyTimeout(STARTUP_BUSY_TIMEOUT_MS, () =>
      this.connection
        .transaction(() => {
          const rows = this.stmts.orphanReservations.all();
          const held = new Map(this.limitStmts.reservationAllotments.all().map((r) => [r.id, r.allotments]));
          for (const row of rows) {
            this.stmts.addBalance.run(row.amount_micro, row.org_id);
            this.lookups.delete(orgKey(row.org_id));
            const allotments = held.get(row.id);
            if (allotments) this.releaseAllotments(JSON.parse(allotments) as AllotmentHold[], row.amount_micro);
            this.stmts.deleteReservation.run(row.id);
          }
          return rows.length;
        })
        .immediate(),
    );
  }

  private withBusyTimeout<T>(ms: number, run: () => T): T {
    const before = this.connection.pragma('busy_timeout', { simple: true }) as number;
    this.connection.pragma(`busy_timeout = ${Math.max(before, ms)}`);
    try {
      return run();
    } finally {
      this.connection.pragma(`busy_timeout = ${before}`);
    }
  }

  /** Gives `amountMicro` back to allotment counters (the unused part of a reservation). */
  private releaseAllotments(holds: readonly AllotmentHold[], amountMicro: number): void {
    for (const hold of holds) this.limitStmts.addAllotment.run(-amountMicro, hold.scope, hold.period);
  }

  /** What a holder has spent (settled + held in flight) in a period, in micro-credits; 0 without a counter. */
  allotmentSpent(scope: string, period: string): number {
    this.flushForRead();
    return (this.limitStmts.allotmentSpent.get(scope, period)?.spent ?? 0) + (this.heldAllotments.get(allotmentKey({ scope, period })) ?? 0);
  }

  /** The row id of a key, for filters (usage report). */
  keyIdOf(clientKey: string): number | undefined {
    return this.limitStmts.keyIdByClientKey.get(clientKey)?.id;
  }

  /** Sets limits on a key (by client key). Returns false when there is no such key. */
  setKeyLimits(clientKey: string, changes: KeyLimitChanges): boolean {
    const key = this.limitStmts.keyIdByClientKey.get(clientKey);
    if (!key) return false;
    const columns: Record<string, unknown> = limitColumns(changes);
    if (changes.allowedModels !== undefined) columns.allowed_models = changes.allowedModels === null ? null : JSON.stringify(changes.allowedModels);
    if (changes.expiresAt !== undefined) columns.expires_at = changes.expiresAt;
    this.updateColumns('keys', key.id, columns);
    return true;
  }

  /** Sets limits on an organisation (shared by all its keys). */
  setOrgLimits(orgId: string, changes: LimitChanges): void {
    this.updateColumns('orgs', orgId, limitColumns(changes));
  }

  private updateColumns(table: 'keys' | 'orgs', id: number | string, columns: Record<string, unknown>): void {
    const names = Object.keys(columns);
    if (names.length === 0) return;
    this.lookups.clear();
    // Column names come from limitColumns / setKeyLimits above, never from input.
    this.connection.prepare(`UPDATE ${table} SET ${names.map((n) => `${n} = @${n}`).join(', ')} WHERE id = @id`).run({ ...columns, id });
  }

  private insertUsage(usage: UsageRecord, admittedAtMs: number): void {
    this.stmts.insertUsage.run({
      // When the request was admitted, not when it ended: its allotment hold is in the admission's
      // period, and a new period's counter is seeded from the rows in that period by `ts`. A request
      // admitted at 23:59:59 and settled after midnight is thus counted in one day, not both.
      ts: new Date(admittedAtMs).toISOString(),
      requestId: usage.requestId,
      orgId: usage.principal?.orgId ?? null,
      keyId: usage.principal?.keyId ?? null,
      route: usage.route,
      model: usage.model,
      promptTokens: usage.promptTokens,
      completionTokens: usage.completionTokens,
      costMicro: usage.costMicro,
      status: usage.status,
      errorCode: usage.errorCode,
      latencyMs: usage.latencyMs,
    });
  }
}

const DUMMY_HASH = hashSecret('cs_not-a-real-secret');

/** A settlement waiting for its commit; `reservation` is set when it moves money and frees a hold. */
interface PendingSettlement {
  reservation: Reservation | null;
  chargeMicro: number;
  usage: UsageRecord;
  /** When the request was admitted (ms since the epoch): settled now, less its latency. */
  admittedAt: number;
}

/** Settled now, less the request's latency: taken when it is settled, not when (later) it is written. */
function admittedAt(usage: UsageRecord): number {
  return Date.now() - Math.max(0, usage.latencyMs || 0);
}

/** Past this many waiting settlements the commit happens at once rather than at the end of the turn. */
const MAX_SETTLEMENTS_PER_COMMIT = 256;
const RETRY_WRITE_MS = 200;
const CLOSE_WRITE_ATTEMPTS = 3;

/** SQLITE_BUSY / SQLITE_LOCKED (and their extended codes): another connection holds the lock for now. */
function isLocked(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^SQLITE_(BUSY|LOCKED)/.test(code);
}

/**
 * Rows every request reads (its key, its model), kept until the database changes. Changes by another
 * connection — the admin CLI in its own process — show in `PRAGMA data_version`, checked once a
 * request (see `checkNow`; a few microseconds against the tens a join costs); this store's own key and model writes
 * clear the cache themselves, since data_version does not count a connection's own commits. Only
 * hits are kept, so made-up keys cannot grow it; it is bounded all the same.
 */
class LookupCache {
  private static readonly MAX_ENTRIES = 10_000;
  private readonly entries = new Map<string, unknown>();
  private readonly dataVersion: Database.Statement<[], number>;
  private seenVersion = -1;
  private checkedThisTurn = false;
  private readonly turnEnded = (): void => {
    this.checkedThisTurn = false;
  };

  constructor(db: Database.Database) {
    this.dataVersion = db.prepare<[], number>('PRAGMA data_version').pluck();
  }

  /**
   * Every request's first look-up (its key, in authenticate*) checks at once, so a request sees every
   * commit made before it arrived, a revocation above all. The rest of the request (its model and
   * balance, an `await` later, in the same turn) reuses that check, as do look-ups of no request
   * made in the same turn: each is a read transaction (SQLite's file locks, 8-10 µs in the profile), and a request read them twice
   * when the check was reset by a microtask. A review caught the first version, which left every
   * check to once a turn: a request read in the turn after a check made in a check phase (a request
   * the TurnBudget started there) was served a key revoked in between.
   */
  checkNow(): void {
    if (!this.checkedThisTurn) {
      this.checkedThisTurn = true;
      setImmediate(this.turnEnded);
    }
    const version = this.dataVersion.get() as number;
    if (version !== this.seenVersion) {
      this.entries.clear();
      this.seenVersion = version;
    }
  }

  get<T>(key: string, read: () => T | undefined): T | undefined {
    if (!this.checkedThisTurn) this.checkNow();
    if (this.entries.has(key)) return this.entries.get(key) as T;
    const value = read();
    if (value !== undefined) {
      if (this.entries.size >= LookupCache.MAX_ENTRIES) this.entries.clear();
      this.entries.set(key, value);
    }
    return value;
  }

  /** Forgets one row this store has just changed itself (data_version does not count its own commits). */
  delete(key: string): void {
    this.entries.delete(key);
  }

  clear(): void {
    this.entries.clear();
  }
}

/** An organisation's row in the lookup cache. */
function orgKey(orgId: string): string {
  return `org:${orgId}`;
}

function allotmentKey(hold: AllotmentHold): string {
  return `${hold.scope}|${hold.period}`;
}

/** Adds `delta` to a tally, dropping entries that come back to zero so the maps stay small. */
function addTo(tally: Map<string, number>, key: string, delta: number): void {
  const next = (tally.get(key) ?? 0) + delta;
  if (next === 0) tally.delete(key);
  else tally.set(key, next);
}

function stripHash(row: PrincipalRow): Principal {
  return {
    keyId: row.keyId,
    clientKey: row.clientKey,
    keyName: row.keyName,
    orgId: row.orgId,
    orgName: row.orgName,
    limits: {
      key: { rpm: row.keyRpm, tpm: row.keyTpm, dailyMicro: row.keyDaily, monthlyMicro: row.keyMonthly },
      org: { rpm: row.orgRpm, tpm: row.orgTpm, dailyMicro: row.orgDaily, monthlyMicro: row.orgMonthly },
    },
    allowedModels: row.allowedModels === null ? null : (JSON.parse(row.allowedModels) as string[]),
    expiresAt: row.expiresAt,
  };
}

function limitColumns(changes: LimitChanges): Record<string, number | null> {
  const columns: Record<string, number | null> = {};
  if (changes.rpm !== undefined) columns.rpm = changes.rpm;
  if (changes.tpm !== undefined) columns.tpm = changes.tpm;
  if (changes.dailyMicro !== undefined) columns.daily_micro = changes.dailyMicro;
  if (changes.monthlyMicro !== undefined) columns.monthly_micro = changes.monthlyMicro;
  return columns;
}
