"""Every command against malformed and unreachable URLs: never a password, never a traceback,
always exit 1 (failed, nothing lost) or 2 (bad input); with --json, a failure report on stdout.

The commands are enumerated from the CLI itself (`automation.commands.COMMANDS`), so a new
command is fuzzed without editing this file. Its URL inputs are found by option name (`*-url`,
`--from-db`, `--pushgateway`); the S3 endpoint (`AWS_ENDPOINT_URL`) and the Pulumi backend are
fuzzed through the environment for every command.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from automation import commands
from automation.cli import build_app
from automation.errors import UserInputError, redact
from automation.stack.render import load_stack_config
from automation.tasks import pgload
from automation.tasks.io import pgtools, urls
from tests.services import S3, Postgres, free_port
from tests.tasks.test_restore_support import create_qr, hand_made_dump, table_checksums

REPO = Path(__file__).resolve().parents[1]
PASSWORDS = [
    "Hunter2Secret",
    "S3cr€tPässwörd",
    "pa%25ss!w0rd~",
    "p@ss:w0rd#1",
    "x" * 40,
    "it's\"q7",
]
# {s}: the option's own scheme (postgresql, redis, http); {pw}: a password; {port}: a closed port
TEMPLATES = [
    "postgresq://admin:{pw}@127.0.0.1:{port}/db",  # mistyped scheme
    "htp://admin:{pw}@127.0.0.1:{port}/db",
    "{s}://admin:{pw}@127.0.0.1:{port}/db",  # right scheme, nobody listening
    "{s}://admin:{pw}@127.0.0.1:notaport/db",
    "{s}://admin:{pw}@127.0.0.1:99999/db",
    "{s}://admin:{pw}@[::1/db",  # broken IPv6 host
    "{s}://ädmin:{pw}@127.0.0.1:{port}/dä",  # unicode
    "{s}://admin:{pw}@:{port}/db",  # no host
    "admin:{pw}@127.0.0.1:{port}/db",  # no scheme at all
    "{s}:/admin:{pw}@127.0.0.1:{port}",  # one slash
    "{s}://admin:{pw}@127.0.0.1:{port}/db?password={pw}&sslmode=bogus",
    "host=127.0.0.1 port={port} password={pw} dbname=db",  # libpq keywords
    "{s}://admin:{pw}@127.0.0.1:{port}/db%zz",
    "\t{s}://admin:{pw}@127.0.0.1/db",
    "not-a-url",
    "",
]
SCHEMES = {"--database-url": "postgresql", "--from-db": "postgresql", "--redis-url": "redis"}
FILLERS = {  # plausible values for required options that take no URL
    "--bucket": "{bucket}",
    "--stack": "dev",
    "--app": "qr",
    "--out": "{tmp}/out",
    "--secret": "db-password",
    "--signing": "stripe",
    "--secret-env": "OPSPLANE_FUZZ_SECRET",
    "key": "qr/20260101T000000Z/manifest.json",
}
OPTIONAL_FILL = ("--bucket", "--signing", "--secret-env")  # the explicit form, where it exists
FLAGS = ("--latest", "--yes")  # present where a command has them: get past the first checks
# render reads a local stack file; demo starts its own services on loopback: neither takes a URL
# `pitr archive-command` only prints the archive_command line (S3 is reached by PostgreSQL, later)
NO_URL_INPUT = {"render", "demo", "pitr archive-command"}


def leaf_commands() -> dict[str, Any]:
    """`name words` -> click command, for every command the CLI has."""
    found: dict[str, Any] = {}

    def walk(command: Any, path: list[str]) -> None:
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                walk(sub, [*path, name])
        else:
            found[" ".join(path)] = command

    walk(typer.main.get_command(build_app()), [])
    return found


def is_url_option(name: str) -> bool:
    return name.endswith("-url") or name in ("--from-db", "--pushgateway")


def url_for(option: str, template: str, password: str, port: int) -> str:
    scheme = SCHEMES.get(option, "http")
    return template.format(s=scheme, pw=password, port=port)


def argv_for(
    command: Any, url_of: dict[str, str], fill: dict[str, str], as_json: bool
) -> list[str]:
    args: list[str] = []
    for param in command.params:
        name = param.opts[0]
        if name in url_of:
            args += [name, url_of[name]]
        elif name in FLAGS or (name == "--json" and as_json):
            args.append(name)
        elif param.required or (name in OPTIONAL_FILL and name in FILLERS):
            value = FILLERS.get(name, "x").format(**fill)  # "x": a new command's own option
            args += [value] if not name.startswith("-") else [name, value]
    return args


def cases(seed: int = 17) -> list[tuple[str, str, bool]]:
    """(template, password, --json) triples: every template once, every password at least twice
    (shuffled, seeded: a failure reproduces), --json on every other case."""
    passwords = [PASSWORDS[i % len(PASSWORDS)] for i in range(len(TEMPLATES))]
    random.Random(seed).shuffle(passwords)
    return [(t, pw, i % 2 == 0) for i, (t, pw) in enumerate(zip(TEMPLATES, passwords, strict=True))]


def assert_safe(output: str, password: str, exit_code: int, where: str) -> None:
    assert exit_code in (1, 2), f"{where}: exit {exit_code}\n{output}"
    assert "Traceback" not in output, f"{where}:\n{output}"
    for secret in {password, password.replace("%25", "%"), password[:12]}:
        assert secret not in output, f"{where}: password printed\n{output}"


def assert_json_report(stdout: str, where: str, stderr: str = "") -> None:
    if "Usage:" in stderr:  # typer refused the arguments themselves (exit 2): no command ran
        return
    document = json.loads(stdout)
    assert document["ok"] is False and document["error"], where


class TestEveryCommandWithBadUrls:
    def test_every_command_is_enumerated(self) -> None:
        tops = {name.split()[0] for name in leaf_commands()}
        assert tops == set(commands.COMMANDS)
        for name, command in leaf_commands().items():
            has_url = any(is_url_option(p.opts[0]) for p in command.params)
            assert has_url or name in NO_URL_INPUT or _url_from_env(command), name

    @pytest.mark.parametrize(("template", "password", "as_json"), cases())
    def test_no_password_no_traceback_exit_1_or_2(
        self,
        template: str,
        password: str,
        as_json: bool,
        s3: S3,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        port = free_port()  # closed: nothing listens there
        fill = {"bucket": s3.create_bucket("fuzz"), "tmp": str(tmp_path)}
        monkeypatch.setenv("OPSPLANE_FUZZ_SECRET", "whsec_fuzz")
        monkeypatch.setenv("PULUMI_BACKEND_URL", url_for("", template, password, port))
        runner, app = CliRunner(), build_app()
        for name, command in leaf_commands().items():
            if name in NO_URL_INPUT:
                continue
            url_of = {
                p.opts[0]: url_for(p.opts[0], template, password, port)
                for p in command.params
                if is_url_option(p.opts[0])
            }
            args = [*name.split(), *argv_for(command, url_of, fill, as_json)]
            env = {"COLUMNS": "200"}
            if not url_of:  # its only URL input is the environment: fuzz the S3 endpoint
                env["AWS_ENDPOINT_URL"] = url_for("", template, password, port)
            result = runner.invoke(app, args, env=env)
            where = f"{' '.join(args)!r}"
            assert not isinstance(result.exception, Exception) or isinstance(
                result.exception, SystemExit
            ), f"{where}: {result.exception!r}"
            assert_safe(result.output, password, result.exit_code, where)
            if as_json and any(p.opts[0] == "--json" for p in command.params):
                assert_json_report(result.stdout, where, result.stderr)

    @pytest.mark.parametrize("template", [TEMPLATES[0], TEMPLATES[2], "not-a-url"])
    def test_a_bad_s3_endpoint_is_one_line_for_every_s3_command(
        self, template: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        password = "EndpointSecret9"
        port = free_port()
        monkeypatch.setenv("AWS_ENDPOINT_URL", url_for("", template, password, port))
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
        runner = CliRunner()
        db = f"postgresql://u:{password}@127.0.0.1:{port}/db"
        for args in (
            ["backup", "--bucket", "bkt", "--database-url", db, "--json"],
            ["verify-backup", "--bucket", "bkt", "--database-url", db, "--latest"],
            ["restore", "--bucket", "bkt", "--database-url", db, "--latest", "--json"],
            ["backups", "list", "--bucket", "bkt"],
            ["backups", "pin", "k", "--bucket", "bkt"],
        ):
            result = runner.invoke(build_app(), args)
            assert_safe(result.output, password, result.exit_code, " ".join(args))
            if "not-a-url" in template or "postgresq" in template:
                assert result.exit_code == 2 and "AWS_ENDPOINT_URL" in result.stderr

    def test_each_command_as_a_real_process(self, tmp_path: Path) -> None:
        """`python -m automation NAME` (signal handlers, lazy imports): one process per command."""
        password = "ProcessSecret77"
        port = free_port()
        env = dict(os.environ, PYTHONPATH=str(REPO), AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}")
        env.update(AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="y", AWS_MAX_ATTEMPTS="1")
        env["OPSPLANE_FUZZ_SECRET"] = "whsec_fuzz"
        fill = {"bucket": "bkt", "tmp": str(tmp_path)}
        seen: set[str] = set()
        for name, command in leaf_commands().items():
            top = name.split()[0]
            if name in NO_URL_INPUT or top in seen:
                continue
            seen.add(top)
            url_of = {
                p.opts[0]: f"postgresq://admin:{password}@127.0.0.1:{port}/db"
                for p in command.params
                if is_url_option(p.opts[0])
            }
            args = [*name.split(), *argv_for(command, url_of, fill, True)]
            proc = subprocess.run(
                [sys.executable, "-m", "automation", *args],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            where = " ".join(args)
            assert_safe(proc.stdout + proc.stderr, password, proc.returncode, where)
            assert_json_report(proc.stdout, where, proc.stderr)
            if "Usage:" not in proc.stderr:  # (typer's own usage errors are a box, exit 2)
                assert len(proc.stderr.strip().splitlines()) == 1, f"{where}:\n{proc.stderr}"


def _url_from_env(command: Any) -> bool:
    """S3 commands read AWS_ENDPOINT_URL; stack commands the stack (and PULUMI_BACKEND_URL)."""
    return any(p.opts[0] in ("--stack", "--bucket") for p in command.params)


class TestRedact:
    @pytest.mark.parametrize(
        "text",
        [
            "--database-url 'postgresq://admin:{pw}@localhost/db': bad scheme",
            'missing "=" after "postgresql://u:{pw}@h/db" in connection info string',
            "postgresql://u:{pw}@h/db?x=1",
            "host=h password={pw} port=5432",
            "password='{pw}' host=h",
            "admin:{pw}@10.0.0.1",
            "redis://:{pw}@cache:6379/0",
            "(postgresql:admin:{pw}@h)",
        ],
    )
    def test_password_is_replaced(self, text: str) -> None:
        for password in PASSWORDS:
            out = redact(text.format(pw=password))
            assert password not in out and "***" in out

    def test_placeholders_and_plain_text_are_left_alone(self) -> None:
        for text in (
            "use postgresql://user:password@host:5432/dbname",
            "mail oncall@example.com",
            "http://localhost:8000/billing/webhook",
            "s3://bkt/qr/20260101T000000Z/manifest.json",
        ):
            assert redact(text) == text


class TestUrlChecks:
    @pytest.mark.parametrize(
        ("url", "why"),
        [
            ("postgresq://a:Secret1@h/db", "scheme 'postgresq'"),
            ("not-a-url", "not a PostgreSQL URL"),
            ("postgresql://a:Secret1@h:abc/db", "port 'abc'"),
            ("postgresql://a:Secret1@h:70000/db", "port '70000'"),
            ("", "empty"),
        ],
    )
    def test_database_url_is_one_line_naming_the_option(self, url: str, why: str) -> None:
        with pytest.raises(UserInputError) as caught:
            pgtools.parse_url(url, "--from-db")
        message = str(caught.value)
        assert message.startswith("--from-db ") and why in message
        assert "Secret1" not in message and "postgresql://user:password@host:5432" in message

    @pytest.mark.parametrize(
        "name", ["Bad_Bucket", "ab", "a" * 64, "-bkt", "bkt-", "192.168.1.1", "b..kt", "bkt\n"]
    )
    def test_invalid_bucket_name_is_one_line(self, name: str) -> None:
        with pytest.raises(UserInputError, match=r"--objects-bucket .*not a valid S3 bucket name"):
            urls.bucket_name(name, "--objects-bucket")

    def test_valid_bucket_names_pass(self) -> None:
        for name in ("qr-backups", "bkt-0123456789", "a.b.c", "abc"):
            assert urls.bucket_name(name) == name

    @pytest.mark.parametrize("value", ["not-a-url", "localhost:9000", "http://", "http://h:0"])
    def test_bad_aws_endpoint_url(self, value: str, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("AWS_ENDPOINT_URL", value)
        monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
        with pytest.raises(UserInputError, match=r"^AWS_ENDPOINT_URL .*http://localhost:9000"):
            urls.s3_endpoint()


# --- one clear line, with the fix ------------------------------------------------------------


def one_error_line(result: Any) -> str:
    assert "Traceback" not in result.output, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


class TestOneClearLine:
    """Item 11: each of these is one line naming the input and the fix."""

    def test_broken_stack_yaml_names_file_and_line(self, tmp_path: Path) -> None:
        (tmp_path / "Pulumi.bad.yaml").write_text("config:\n  opsplane:apps: [qr\n")
        with pytest.raises(UserInputError, match=r"Pulumi.bad.yaml: not valid YAML at line 3"):
            load_stack_config("bad", tmp_path)

    def test_duplicated_stack_key_is_refused(self, tmp_path: Path) -> None:
        (tmp_path / "Pulumi.dup.yaml").write_text(
            "config:\n  opsplane:apps: [qr]\n  aws:region: eu-west-1\n  opsplane:apps: [qr, x]\n"
        )
        with pytest.raises(UserInputError, match=r"'opsplane:apps' appears twice \(lines 2 and 4"):
            load_stack_config("dup", tmp_path)

    def test_real_stack_files_still_load(self) -> None:
        assert load_stack_config("dev") and load_stack_config("prod")

    @pytest.mark.parametrize("command", ["restore", "verify-backup"])
    def test_empty_backup_object(self, command: str, postgres: Postgres, s3: S3) -> None:
        bucket = s3.create_bucket()
        s3.client().put_object(Bucket=bucket, Key="hand/qr.sql.gz", Body=b"")
        url = postgres.create_database("qr")
        args = [command, "--database-url", url, "--bucket", bucket, "--key", "hand/qr.sql.gz"]
        result = CliRunner().invoke(
            build_app(), [*args, *(["--yes"] if command == "restore" else [])]
        )
        assert result.exit_code == 2
        assert "hand/qr.sql.gz is empty (0 bytes): not a backup; pick another --key" in (
            one_error_line(result)
        )

    def test_dump_with_restrict_names_psql_version_and_fix(
        self, postgres: Postgres, s3: S3
    ) -> None:
        """pg_dump 15.14+/16.10+ begin the script with `\\restrict KEY`; psql 16.2 (pgserver's)
        predates it."""
        url = postgres.create_database("qr")
        create_qr(url, rows=20)
        sql = gzip.decompress(hand_made_dump(postgres, url))
        bucket = s3.create_bucket()
        body = gzip.compress(b"\\restrict K3y\n" + sql + b"\n\\unrestrict K3y\n")
        s3.client().put_object(Bucket=bucket, Key="hand/qr.sql.gz", Body=body)
        before = table_checksums(url)
        for command in (["restore", "--yes"], ["verify-backup"]):
            args = ["--database-url", url, "--bucket", bucket, "--key", "hand/qr.sql.gz"]
            result = CliRunner().invoke(build_app(), [command[0], *args, *command[1:]])
            line = one_error_line(result)
            assert result.exit_code == 1 and "invalid command \\restrict" in line
            psql = pgtools.tool_version(postgres.bin_dir / "psql")
            major = int(psql.split(".")[0])
            assert f"psql {psql}" in line
            assert f"restore with psql {major}.{pgtools.RESTRICT_SINCE[major]} or newer" in line
        assert table_checksums(url) == before

    def test_newer_archive_into_older_server_names_both_versions(
        self, postgres: Postgres, tmp_path: Path
    ) -> None:
        """A PostgreSQL 16 custom archive read by the PostgreSQL 15 pg_restore that a 15 server
        would be restored with (the Debian client tools on this machine)."""
        old = Path("/usr/lib/postgresql/15/bin/pg_restore")
        assert old.exists(), "the PostgreSQL 15 client tools are part of the build image"
        url = postgres.create_database("qr")
        create_qr(url, rows=5)
        archive = tmp_path / "qr.dump"
        subprocess.run(
            [str(postgres.bin_dir / "pg_dump"), "-Fc", "-f", str(archive)],
            env=pgtools.libpq_env(url),
            check=True,
        )
        failed = subprocess.run([str(old), "-l", str(archive)], capture_output=True, text=True)
        assert failed.returncode != 0
        line = pgload.tool_error(failed.stderr)
        pgtools._chosen["pg_restore"] = (old, pgtools.tool_version(old))  # as find_pg_tool does
        line = pgtools.explain_tool_error(line)
        assert "made by pg_dump of PostgreSQL 16" in line
        assert "the target server runs PostgreSQL 15 and its pg_restore 15." in line
        assert "restore into a PostgreSQL 16 (or newer) server" in line

    def test_missing_objects_bucket_names_the_option(self, s3: S3) -> None:
        bucket = s3.create_bucket()
        args = ["backup", "--bucket", bucket, "--app", "qr", "--objects-bucket", "no-such-bkt"]
        result = CliRunner().invoke(build_app(), args)
        line = one_error_line(result)
        assert "'no-such-bkt' does not exist" in line and "fix --objects-bucket" in line
        assert "fix --bucket" not in line

    @pytest.mark.parametrize("where", ["mars", "cluster"])
    def test_where_in_the_explicit_restore_form_is_refused(self, where: str) -> None:
        args = ["restore", "--database-url", "postgresql://u@h/db", "--bucket", "bkt"]
        result = CliRunner().invoke(build_app(), [*args, "--latest", "--where", where])
        assert result.exit_code == 2 and f"--where {where}" in one_error_line(result).replace(
            "'", ""
        )

    def test_an_empty_replay_window_is_an_error(self, tmp_path: Path) -> None:
        events = tmp_path / "events.jsonl"
        events.write_text('{"id": "evt_1", "object": "event", "created": 1714000000}\n')
        args = ["replay", "--webhook-url", "http://127.0.0.1:9/x", "--signing", "stripe"]
        args += ["--from-file", str(events), "--since", "2d", "--until", "3d", "--dry-run"]
        result = CliRunner().invoke(build_app(), args)
        assert result.exit_code == 2
        assert "the window is empty" in one_error_line(result)
        assert "--since 3d --until 2d" in one_error_line(result)

    def test_replay_dry_run_needs_no_signing_secret(self, tmp_path: Path) -> None:
        events = tmp_path / "events.jsonl"
        events.write_text('{"id": "evt_1", "object": "event", "created": 1714000000}\n')
        args = ["replay", "--webhook-url", "http://127.0.0.1:9/x", "--signing", "stripe"]
        result = CliRunner().invoke(
            build_app(), [*args, "--from-file", str(events), "--dry-run", "--json"]
        )
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout)["to_send"] == 1

    @pytest.mark.parametrize(
        "args",
        [
            ["backup", "--database-url", "postgresql://u@h/db", "--bucket", "Bad_Bucket"],
            ["verify-backup", "--database-url", "postgresql://u@h/db", "--bucket", "Bad_Bucket"],
            ["restore", "--database-url", "postgresql://u@h/db", "--bucket", "Bad_Bucket"],
            ["backups", "list", "--bucket", "Bad_Bucket"],
        ],
    )
    def test_invalid_bucket_name_is_one_line_exit_2(self, args: list[str]) -> None:
        result = CliRunner().invoke(
            build_app(), [*args, "--latest"] if args[0] in ("verify-backup", "restore") else args
        )
        assert result.exit_code == 2
        assert "--bucket 'Bad_Bucket': not a valid S3 bucket name" in one_error_line(result)

    @pytest.mark.parametrize("command", ["backup", "verify-backup"])
    def test_not_a_url_database_is_exit_2(self, command: str) -> None:
        args = [command, "--database-url", "not-a-url", "--bucket", "bkt", "--latest"]
        result = CliRunner().invoke(build_app(), args[:-1] if command == "backup" else args)
        assert result.exit_code == 2
        assert "--database-url 'not-a-url': not a PostgreSQL URL; use postgresql://" in (
            one_error_line(result)
        )

    def test_missing_objects_bucket_on_restore_is_named_before_anything_changes(
        self, postgres: Postgres, s3: S3
    ) -> None:
        url = postgres.create_database("qr")
        create_qr(url, rows=5)
        bucket = s3.create_bucket()
        before = table_checksums(url)
        args = ["restore", "--database-url", url, "--bucket", bucket, "--latest", "--yes"]
        args += ["--component", "all", "--redis-data-dir", "/nonexistent"]
        result = CliRunner().invoke(build_app(), [*args, "--objects-bucket", "no-such-bkt"])
        line = one_error_line(result)
        assert "'no-such-bkt' does not exist" in line and "fix --objects-bucket" in line
        assert table_checksums(url) == before


class TestErrorBoundary:
    """console.handle_errors: the one place every command's errors pass."""

    def app_raising(self, exc: BaseException) -> Any:
        from automation.console import handle_errors

        app = typer.Typer()

        @app.command()
        @handle_errors
        def boom(json: bool = typer.Option(False, "--json")) -> None:
            raise exc

        @app.command()
        def other() -> None:
            pass

        return app

    def test_an_unexpected_exception_is_one_redacted_line_exit_1(self) -> None:
        app = self.app_raising(KeyError("postgresql://admin:Hunter2Secret@db/qr"))
        result = CliRunner().invoke(app, ["boom", "--json"])
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
        line = one_error_line(result)
        assert "unexpected KeyError" in line and "OPSPLANE_DEBUG=1" in line
        assert "Hunter2Secret" not in result.output
        assert json.loads(result.stdout)["error"] == line.removeprefix("error: ")

    def test_debug_shows_the_traceback(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("OPSPLANE_DEBUG", "1")
        result = CliRunner().invoke(self.app_raising(KeyError("x")), ["boom"])
        assert isinstance(result.exception, KeyError)

    def test_an_interrupt_with_a_report_prints_it(self) -> None:
        exc = KeyboardInterrupt()
        exc.report = {"delivered": 3}  # type: ignore[attr-defined]
        exc.summary = "delivered 3 of 9"  # type: ignore[attr-defined]
        result = CliRunner().invoke(self.app_raising(exc), ["boom", "--json"])
        assert result.exit_code == 1
        assert one_error_line(result) == "error: interrupted: delivered 3 of 9"
        document = json.loads(result.stdout)
        assert document["interrupted"] is True and document["report"] == {"delivered": 3}

    def test_json_documents_keep_their_structure_when_redacted(self, capsys: Any) -> None:
        from automation.console import emit_json

        emit_json({"a": 'password="', "b": ["redis://:Sekret99@cache:6379"], "n": 1})
        document = json.loads(capsys.readouterr().out)
        assert document == {"a": 'password="', "b": ["redis://:***@cache:6379"], "n": 1}
