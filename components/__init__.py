"""opsplane's Pulumi components and the data they are built from."""
