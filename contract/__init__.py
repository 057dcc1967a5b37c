"""What the Pulumi program and automation share, defined once: the backup layout (and, as it
moves here, the `ops` output types and the config keys automation writes).

Pure: imports nothing of ours and no Pulumi. `components` and `automation` both import it.
"""
