from tests.services import postgres, s3, s3_server  # noqa: F401  (shared fixtures)
