"""Webhook replay: failed events re-signed and re-sent, rate-limited, recorded in a ledger.

Modules: `sources` (webhook log table, exported files, filters), `signing` (stripe, hmac-sha256),
`ratelimit` (shared pacing + 429 pause), `delivery` (workers, retries), `ledger` (what was
delivered), `run` (one run end to end). See docs/replay.md.
"""
