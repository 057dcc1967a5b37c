-- The QR Clone Engine's tables as its runbook shows them (Alembic-managed). The demo's seed
-- (qr_seed.sql) includes it, and the tests build their QR databases from it.
CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);
CREATE TABLE accounts (
    id uuid PRIMARY KEY, email text NOT NULL UNIQUE, plan text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE qr_items (
    id bigserial PRIMARY KEY, owner_id uuid NOT NULL REFERENCES accounts(id),
    target_url text NOT NULL, payload jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX idx_qr_items_owner_created ON qr_items(owner_id, created_at DESC);
CREATE TABLE qr_events (
    id bigserial PRIMARY KEY, item_id bigint NOT NULL REFERENCES qr_items(id), type text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE webhook_logs (
    id bigserial PRIMARY KEY, event_id text NOT NULL UNIQUE, event_type text NOT NULL,
    status text NOT NULL, error_message text, payload text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now());
