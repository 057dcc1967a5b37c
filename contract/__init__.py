"""What the Pulumi program and automation share, each defined once: the `ops` output types
(`ops`), the config keys automation writes (`rotation`, `maintenance`, `cluster_job`), the backup
layout and its lifecycle rules.

Pure: imports nothing of ours and no Pulumi (tests/test_layers.py). Imported by `components` and
`automation` alike.
"""
