-- The QR Clone Engine's database as its runbook shows it (Alembic), with generated rows:
-- :rows accounts, 2x QR codes, 3x scan events, and 30 Stripe webhook deliveries of which every
-- third failed (a timeout), for `replay`. `python -m automation demo` runs it as
--   psql URL -v ON_ERROR_STOP=1 -v rows=N -v head=REVISION -f automation/demo/qr_seed.sql
BEGIN;

\ir qr_schema.sql

INSERT INTO alembic_version VALUES (:'head');

INSERT INTO accounts (id, email, plan)
SELECT md5(i::text)::uuid, 'user' || i || '@example.com', (ARRAY['free', 'pro', 'team'])[1 + i % 3]
FROM generate_series(1, :rows) AS i;

INSERT INTO qr_items (owner_id, target_url, payload)
SELECT md5((1 + i % :rows)::text)::uuid, 'https://example.com/' || i,
       jsonb_build_object('size', 256, 'color', '#000000', 'n', i)
FROM generate_series(1, 2 * :rows) AS i;

INSERT INTO qr_events (item_id, type)
SELECT 1 + i % (2 * :rows), (ARRAY['scan', 'create', 'export'])[1 + i % 3]
FROM generate_series(1, 3 * :rows) AS i;

INSERT INTO webhook_logs (event_id, event_type, status, error_message, payload, created_at)
SELECT e.id, e.type,
       CASE WHEN i % 3 = 0 THEN 'failed' ELSE 'processed' END,
       CASE WHEN i % 3 = 0 THEN 'timeout' END,
       jsonb_build_object('id', e.id, 'object', 'event', 'type', e.type,
                          'data', jsonb_build_object('object', jsonb_build_object('n', i)))::text,
       now() - make_interval(mins => i)
FROM generate_series(1, 30) AS i,
     LATERAL (SELECT 'evt_demo_' || lpad(i::text, 4, '0') AS id,
                     (ARRAY['checkout.session.completed', 'invoice.payment_succeeded',
                            'customer.subscription.updated'])[1 + i % 3] AS type) AS e;

COMMIT;
