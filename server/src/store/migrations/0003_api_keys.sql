-- drivetag schema, version 3: API keys. Only the argon2id hash of a key's secret is kept.
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL,
    role TEXT NOT NULL,
    scope_id TEXT,
    name TEXT NOT NULL,
    created_s {int} NOT NULL,
    revoked_s {int}
);
