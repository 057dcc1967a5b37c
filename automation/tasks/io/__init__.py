"""Input/output the tasks share: S3 streaming (`s3io`), gzip (`gz`), PostgreSQL tools (`pgtools`).
Imports nothing of ours but `automation.errors` and `contract`.
"""
