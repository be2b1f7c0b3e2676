/**
 * Schema migrations, applied in order at start-up. `PRAGMA user_version` records how many have run.
 * Never edit a migration that has shipped: add a new one.
 */
import type Database from 'better-sqlite3';

const MIGRATIONS: readonly string[] = [
  // 1: organisations, keys, models, reservations, usage.
  `
  CREATE TABLE orgs (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    -- NULL means unlimited (a hobbyist's own apps); otherwise micro-credits, never negative.
    balance_micro INTEGER CHECK (balance_micro IS NULL OR balance_micro >= 0),
    created_at    TEXT NOT NULL
  );
  CREATE TABLE keys (
    id             INTEGER PRIMARY KEY,
    client_key     TEXT NOT NULL UNIQUE,
    name           TEXT NOT NULL,
    org_id         TEXT NOT NULL REFERENCES orgs(id),
    secret_hash    BLOB NOT NULL,
    api_key_hash   BLOB NOT NULL UNIQUE,
    api_key_prefix TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    revoked_at     TEXT
  );
  CREATE TABLE models (
    name              TEXT PRIMARY KEY,
    ollama_model      TEXT NOT NULL,
    category          TEXT NOT NULL DEFAULT 'chat' CHECK (category IN ('chat', 'embedding', 'moderation')),
    input_micro_1k    INTEGER NOT NULL DEFAULT 0 CHECK (input_micro_1k >= 0),
    output_micro_1k   INTEGER NOT NULL DEFAULT 0 CHECK (output_micro_1k >= 0),
    max_output_tokens INTEGER,
    tokenizer         TEXT,
    created_at        TEXT NOT NULL
  );
  -- Credits set aside for requests in flight. A row outlives a crash, so start-up can refund it.
  CREATE TABLE reservations (
    id           INTEGER PRIMARY KEY,
    org_id       TEXT NOT NULL REFERENCES orgs(id),
    amount_micro INTEGER NOT NULL CHECK (amount_micro >= 0),
    created_at   TEXT NOT NULL
  );
  CREATE TABLE usage (
    id                INTEGER PRIMARY KEY,
    ts                TEXT NOT NULL,
    request_id        TEXT NOT NULL,
    org_id            TEXT,
    key_id            INTEGER,
    route             TEXT NOT NULL,
    model             TEXT,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cost_micro        INTEGER NOT NULL DEFAULT 0,
    status            INTEGER NOT NULL,
    error_code        TEXT,
    latency_ms        INTEGER NOT NULL
  );
  CREATE INDEX usage_org_ts ON usage (org_id, ts);
  CREATE INDEX usage_key_ts ON usage (key_id, ts);
  `,
  // 2: the Covalid document's model names, as aliases of common Ollama models (change with `models set`).
  `
  INSERT OR IGNORE INTO models (name, ollama_model, category, created_at) VALUES
    ('covalid-1.0', 'llama3.2', 'chat', strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    ('covalid-2.0', 'llama3.1:8b', 'chat', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
  `,
  // 3: limits per key and organisation (NULL = none), key allow-lists and expiry, allotment counters.
  `
  ALTER TABLE keys ADD COLUMN rpm INTEGER CHECK (rpm IS NULL OR rpm > 0);
  ALTER TABLE keys ADD COLUMN tpm INTEGER CHECK (tpm IS NULL OR tpm > 0);
  ALTER TABLE keys ADD COLUMN daily_micro INTEGER CHECK (daily_micro IS NULL OR daily_micro >= 0);
  ALTER TABLE keys ADD COLUMN monthly_micro INTEGER CHECK (monthly_micro IS NULL OR monthly_micro >= 0);
  -- JSON array of public model names; NULL = every model.
  ALTER TABLE keys ADD COLUMN allowed_models TEXT;
  ALTER TABLE keys ADD COLUMN expires_at TEXT;
  ALTER TABLE orgs ADD COLUMN rpm INTEGER CHECK (rpm IS NULL OR rpm > 0);
  ALTER TABLE orgs ADD COLUMN tpm INTEGER CHECK (tpm IS NULL OR tpm > 0);
  ALTER TABLE orgs ADD COLUMN daily_micro INTEGER CHECK (daily_micro IS NULL OR daily_micro >= 0);
  ALTER TABLE orgs ADD COLUMN monthly_micro INTEGER CHECK (monthly_micro IS NULL OR monthly_micro >= 0);
  -- Credits spent (settled + set aside in flight) per holder ('key:3', 'org:…') and UTC period
  -- ('day:2024-01-19', 'month:2024-01'). A new period is a new row: that is the reset.
  CREATE TABLE allotment_spend (
    scope       TEXT NOT NULL,
    period      TEXT NOT NULL,
    spent_micro INTEGER NOT NULL CHECK (spent_micro >= 0),
    PRIMARY KEY (scope, period)
  ) WITHOUT ROWID;
  -- The allotment counters a reservation holds (JSON [{scope, period}]), so a crash refund can correct them.
  ALTER TABLE reservations ADD COLUMN allotments TEXT;
  `,
  // 4: what an image adds to a model's prompt estimate (NULL = the gateway's IMAGE_TOKENS).
  `
  ALTER TABLE models ADD COLUMN image_tokens INTEGER CHECK (image_tokens IS NULL OR image_tokens >= 0);
  `,
];

export function migrate(db: Database.Database): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  for (let version = current; version < MIGRATIONS.length; version++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[version] as string);
      db.pragma(`user_version = ${version + 1}`);
    }).immediate();
  }
}
