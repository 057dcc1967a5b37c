import psycopg


def test_postgres_and_s3_fixtures_are_real(postgres, s3):
    url = postgres.create_database()
    with psycopg.connect(url) as conn:
        assert conn.execute("show server_version_num").fetchone()[0].startswith("16")
    bucket = s3.create_bucket()
    s3.client().put_object(Bucket=bucket, Key="k", Body=b"v")
    assert s3.client().get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
