"""Smoke tests for the real-infrastructure fixtures (PostgreSQL, sshd)."""

from __future__ import annotations

import shutil
import subprocess

import psycopg
import pytest

from tests.fixtures.postgres import libpq_url


@pytest.mark.postgres
def test_postgres_server_answers(postgres_url: str) -> None:
    assert postgres_url.startswith("postgresql+psycopg://")
    with psycopg.connect(libpq_url(postgres_url)) as conn:
        (version,) = conn.execute("select version()").fetchone()
    assert "PostgreSQL" in version


@pytest.mark.postgres
def test_postgres_db_is_fresh_and_private(postgres_db_url: str) -> None:
    dbname = postgres_db_url.rsplit("/", 1)[1]
    with psycopg.connect(libpq_url(postgres_db_url)) as conn:
        assert conn.execute("select current_database()").fetchone() == (dbname,)
        tables = conn.execute("select count(*) from pg_tables where schemaname = 'public'").fetchone()
        assert tables == (0,)
        conn.execute("create table t (x int)")


@pytest.mark.sshd
def test_sshd_accepts_real_ssh_client(sshd_factory) -> None:
    ssh = shutil.which("ssh")
    assert ssh, "the OpenSSH client (ssh) is needed for this test"
    host = sshd_factory(address="127.0.0.2")
    assert host.host_key_fingerprint.startswith("SHA256:")
    result = subprocess.run(
        [
            ssh,
            "-i", str(host.client_key_path),
            "-p", str(host.port),
            "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes",
            f"{host.user}@{host.host}",
            "echo hello",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, f"ssh failed: {result.stderr}\n--- sshd log ---\n{host.log()}"
    assert result.stdout.strip() == "hello"
