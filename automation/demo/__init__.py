"""`python -m automation demo`: the on-call loop played on embedded services on loopback.

`services` starts PostgreSQL (pgserver), an S3 server (moto), redis-server and `standin` (the QR
app's health endpoint and Stripe webhook receiver); `seed` fills a QR-shaped database; `play`
runs each step as the real `python -m automation ...` command and checks that it did what it says.
pgserver, moto and stripe are dev dependencies (`make setup`): they are imported only here, and
only when the demo runs.
"""
