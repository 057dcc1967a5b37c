"""Restore throughput: the runbook's `gunzip -c | psql` and bare `pg_restore --jobs N` against
`automation restore`.

One run, same generated database, same dump:
1. generate a QR-shaped database whose plain SQL dump is >= --min-mb (default 200 MB);
2. back it up twice with the backup task (plain .sql.gz and custom), to a moto S3 server;
3. each round, one after the other: the runbook (`createdb` + `gunzip -c backup.sql.gz | psql`
   from a local copy of the same .sql.gz), bare `pg_restore --jobs N` from a local copy of the
   custom-format dump into an empty database (no verify, no swap: the floor), then
   `python -m automation restore` plain (verify + create + load + check + swap) with its default
   --jobs, then custom with `--jobs`, each into a live database that it swaps out.
Throughput is uncompressed SQL bytes per second of wall time; the ratio is runbook seconds over
restore seconds: per round (the sides ran back to back), the median of those, and the ratio of the
medians. The custom restore is also reported against bare `pg_restore` (goal >= 1.0x: verify,
shadow and swap cost nothing). Peak RSS is the largest process of each side's tree (wait4 rusage:
the command and the tools it waited for). Also printed: the moto server's CPU while a restore side
runs (on 2 cores it competes with PostgreSQL, which a real S3 would not), the CPU PostgreSQL spent
on each side, and the CPU time the hypervisor stole from this virtual machine during each side
(/proc/stat).

    .venv/bin/python bench/restore_bench.py             # 3 rounds, about 5 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import boto3
import pgserver
import psutil
import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from automation.tasks.backup import BackupOptions, run_backup  # noqa: E402
from automation.tasks.io.pgtools import libpq_env  # noqa: E402
from tests.schemas import QR_DDL  # noqa: E402
from tests.services import free_port  # noqa: E402

BYTES_PER_ROW = 560  # plain-dump bytes per generated account (with its items and events)


def generate(url: str, accounts: int) -> None:
    """QR schema: accounts, 2x qr_items (jsonb), 3x qr_events, accounts/100 webhook logs."""
    with psycopg.connect(url) as conn:
        conn.execute(QR_DDL)
        conn.execute("INSERT INTO alembic_version VALUES ('7f3a9c1d2e4b')")
        conn.execute(
            """INSERT INTO accounts (id, email, plan)
               SELECT md5(i::text)::uuid, 'user' || i || '@example.com',
                      (ARRAY['free','pro','team'])[1 + i %% 3]
               FROM generate_series(1, %s) AS i""",
            (accounts,),
        )
        conn.execute(
            """INSERT INTO qr_items (owner_id, target_url, payload)
               SELECT md5((1 + i %% %s)::text)::uuid, 'https://example.com/qr/' || md5(i::text),
                      jsonb_build_object('size', 256, 'color', '#000000', 'n', i,
                                         'label', 'item ' || i)
               FROM generate_series(1, %s) AS i""",
            (accounts, accounts * 2),
        )
        conn.execute(
            """INSERT INTO qr_events (item_id, type)
               SELECT 1 + i %% %s, (ARRAY['scan','create','export'])[1 + i %% 3]
               FROM generate_series(1, %s) AS i""",
            (accounts * 2, accounts * 3),
        )
        conn.execute(
            """INSERT INTO webhook_logs (event_id, event_type, status, payload)
               SELECT 'evt_' || i, 'invoice.paid', 'processed', repeat('x', 200)
               FROM generate_series(1, %s) AS i""",
            (max(accounts // 100, 1),),
        )


def run_alone(
    args: list[str], env: dict[str, str], shell: bool = False
) -> tuple[float, float, str]:
    """Run in a fresh helper process so RUSAGE_CHILDREN covers this command only."""
    helper = (
        "import json,sys,subprocess,time,resource\n"
        "a=json.loads(sys.argv[1]);t=time.monotonic()\n"
        "p=subprocess.run(a['args'] if not a['shell'] else a['args'][0],shell=a['shell'],"
        "capture_output=True)\n"
        "s=time.monotonic()-t\n"
        "r=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024\n"
        "sys.stderr.write(p.stderr.decode()[-3000:]) if p.returncode else None\n"
        "print(json.dumps({'s':s,'rss':r,'rc':p.returncode,'out':p.stdout.decode()}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", helper, json.dumps({"args": args, "shell": shell})],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0 or not result.stdout.strip():
        raise SystemExit(f"helper failed: {result.stderr[-2000:]}")
    data = json.loads(result.stdout.strip().splitlines()[-1])
    if data["rc"] != 0:
        raise SystemExit(f"{str(args)[:120]} failed ({data['rc']}): {result.stderr[-2000:]}")
    return data["s"], data["rss"], data["out"]


def counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return {
            t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("accounts", "qr_items", "qr_events", "webhook_logs")
        }


def postgres_cpu(data_dir: Path) -> float:
    """CPU seconds PostgreSQL has used so far: the postmaster, its live children (checkpointer,
    WAL writer, ...) and the backends that have exited (the postmaster's children times)."""
    postmaster = psutil.Process(int((data_dir / "postmaster.pid").read_text().split()[0]))
    own = postmaster.cpu_times()
    total = own.user + own.system + own.children_user + own.children_system
    for child in postmaster.children():
        with contextlib.suppress(psutil.Error):
            times = child.cpu_times()
            total += times.user + times.system
    return total


def s3_server_cpu() -> float:
    """CPU seconds of this process so far: the moto server threads (nothing else runs here while
    a side runs in its helper process)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def stolen_seconds() -> float:
    """CPU time the hypervisor gave to other guests so far (all CPUs; /proc/stat `steal`)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()
    return int(fields[8]) / os.sysconf("SC_CLK_TCK")


def recreate(url: str, db: str) -> None:
    """Drop `db` and what earlier rounds' restores kept of it; create it empty."""
    with psycopg.connect(url, autocommit=True) as conn:
        names = conn.execute(
            "SELECT datname FROM pg_database WHERE datname = %s OR datname LIKE %s",
            (db, f"{db}\\_%restore\\_%"),
        ).fetchall()
        for (name,) in names:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        conn.execute(f"CREATE DATABASE {db}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-mb", type=int, default=200, help="minimum plain dump size (MB)")
    parser.add_argument("--jobs", type=int, default=2, help="--jobs of the custom-format side")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of all four sides")
    opts = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="opsplane-restore-bench-"))
    pg_dir = work / "pg"
    server = pgserver.get_server(str(pg_dir), cleanup_mode="delete")
    socket_dir = server.get_uri().split("host=")[1]
    bin_dir = Path(pgserver.__file__).parent / "pginstall" / "bin"

    def url(db: str) -> str:
        return f"postgresql://postgres@/{db}?host={socket_dir}"

    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    env = dict(os.environ)
    env |= {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    os.environ.update({k: env[k] for k in env if k.startswith("AWS_")})
    try:
        s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1")
        s3.create_bucket(Bucket="bench")
        recreate(url("postgres"), "source")
        accounts = opts.min_mb * 1024 * 1024 // BYTES_PER_ROW
        print(f"generating {accounts:,} accounts (+2x items, 3x events) ...", file=sys.stderr)
        generate(url("source"), accounts)
        expected = counts(url("source"))

        print("backing up (plain and custom) ...", file=sys.stderr)
        plain = run_backup(BackupOptions(bucket="bench", database_url=url("source"), app="plain"))
        custom = run_backup(
            BackupOptions(bucket="bench", database_url=url("source"), app="custom", format="custom")
        )
        plain_key = plain.manifest_key.replace("manifest.json", "db.sql.gz")
        local = work / "backup.sql.gz"
        s3.download_file("bench", plain_key, str(local))
        sql_bytes = int(
            subprocess.run(
                f"gunzip -c {local} | wc -c", shell=True, capture_output=True, check=True
            ).stdout
        )
        print(
            f"dump: {sql_bytes / 1e6:,.0f} MB SQL, {local.stat().st_size / 1e6:,.0f} MB gzip",
            file=sys.stderr,
        )

        custom_local = work / "backup.dump"
        s3.download_file("bench", custom.manifest_key.replace("manifest.json", "db.dump"),
                         str(custom_local))  # fmt: skip
        psql = bin_dir / "psql"
        runbook = "runbook (gunzip -c | psql)"
        bare = f"bare pg_restore --jobs {opts.jobs} (local file)"
        custom_label = f"automation restore, custom --jobs {opts.jobs}"
        sides = {
            "automation restore, plain": ("live_plain", plain_key, []),
            custom_label: (
                "live_custom",
                custom.manifest_key,
                ["--jobs", str(opts.jobs)],
            ),
        }
        seconds: dict[str, list[float]] = {runbook: [], bare: [], **{lb: [] for lb in sides}}
        rss: dict[str, float] = dict.fromkeys(seconds, 0.0)
        s3_cpu: dict[str, list[float]] = {label: [] for label in sides}
        db_cpu: dict[str, list[float]] = {label: [] for label in seconds}
        steal: dict[str, list[str]] = {label: [] for label in seconds}
        for round_no in range(1, opts.rounds + 1):
            recreate(url("postgres"), "runbook")
            command = f"gunzip -c {local} | {psql} -q -d runbook >/dev/null"
            before, stolen = postgres_cpu(pg_dir), stolen_seconds()
            took, peak, _ = run_alone([command], libpq_env(url("runbook"), env), True)
            db_cpu[runbook].append(postgres_cpu(pg_dir) - before)
            steal[runbook].append(f"{stolen_seconds() - stolen:.1f}")
            assert counts(url("runbook")) == expected
            seconds[runbook].append(took)
            rss[runbook] = max(rss[runbook], peak)
            line = [f"round {round_no}: runbook {took:.1f}s"]
            recreate(url("postgres"), "bare")
            command = [str(bin_dir / "pg_restore"), "--jobs", str(opts.jobs), "--dbname",
                       url("bare"), str(custom_local)]  # fmt: skip
            before, stolen = postgres_cpu(pg_dir), stolen_seconds()
            took, peak, _ = run_alone(command, env)
            db_cpu[bare].append(postgres_cpu(pg_dir) - before)
            steal[bare].append(f"{stolen_seconds() - stolen:.1f}")
            assert counts(url("bare")) == expected
            seconds[bare].append(took)
            rss[bare] = max(rss[bare], peak)
            line.append(f"bare pg_restore {took:.1f}s")
            for label, (live, key, extra) in sides.items():
                recreate(url("postgres"), live)
                with psycopg.connect(url(live)) as conn:
                    conn.execute("CREATE TABLE old_state (x int)")
                args = [sys.executable, "-m", "automation", "restore", "--database-url", url(live)]
                args += ["--bucket", "bench", "--key", key, "--yes", "--json", *extra]
                served, before, stolen = s3_server_cpu(), postgres_cpu(pg_dir), stolen_seconds()
                took, peak, out = run_alone(args, env)
                steal[label].append(f"{stolen_seconds() - stolen:.1f}")
                s3_cpu[label].append(s3_server_cpu() - served)
                db_cpu[label].append(postgres_cpu(pg_dir) - before)
                report = json.loads(out)["database"]
                assert counts(url(live)) == expected, f"{label}: wrong row counts"
                seconds[label].append(took)
                rss[label] = max(rss[label], peak)
                steps = ", ".join(f"{s['name']} {s['seconds']:.1f}" for s in report["steps"])
                line.append(f"{label.split(', ')[1]} {took:.1f}s ({steps})")
            print("; ".join(line), file=sys.stderr)

        base = statistics.median(seconds[runbook])
        print(f"\nplain SQL: {sql_bytes / 1e6:,.0f} MB; gzip: {local.stat().st_size / 1e6:,.0f} MB")
        print(f"rounds: {opts.rounds}, sides alternating within each round")
        header = f"{'side':<38} {'median s':>8} {'MB/s':>6} {'ratio of medians':>16}"
        print(f"{header} {'median of round ratios':>22}  {'per round':<30} {'peak RSS MB':>11}")
        for label, times in seconds.items():
            median = statistics.median(times)
            ratios = [r / t for r, t in zip(seconds[runbook], times, strict=True)]
            per_round = " ".join(f"{ratio:.2f}" for ratio in ratios)
            print(
                f"{label:<38} {median:>8.1f} {sql_bytes / 1e6 / median:>6.1f} "
                f"{base / median:>15.2f}x {statistics.median(ratios):>21.2f}x  {per_round:<30} "
                f"{rss[label]:>11.0f}"
            )
        floor = [b / c for b, c in zip(seconds[bare], seconds[custom_label], strict=True)]
        print(
            f"{custom_label} against {bare}: ratio of medians "
            f"{statistics.median(seconds[bare]) / statistics.median(seconds[custom_label]):.2f}x, "
            f"median of round ratios {statistics.median(floor):.2f}x (goal >= 1.0x)"
        )
        for label, stolen in steal.items():
            print(f"CPU time stolen by the hypervisor during {label}: {' '.join(stolen)}")
        for label, spent in db_cpu.items():
            print(f"PostgreSQL CPU during {label}: median {statistics.median(spent):.1f} s")
        for label, spent in s3_cpu.items():
            print(f"moto S3 server CPU during {label}: median {statistics.median(spent):.1f} s")
    finally:
        moto.stop()
        server.cleanup()


if __name__ == "__main__":
    main()
