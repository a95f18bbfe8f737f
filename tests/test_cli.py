"""`python -m taskdash user|token ...` against a real database, as an operator runs it."""

from __future__ import annotations

from pathlib import Path

from tests.databases import query, stored_bytes
from tests.support import taskdash_cli

PASSWORD = "correct horse battery"


def test_users_are_added_listed_given_a_new_password_and_removed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    added = taskdash_cli(
        data,
        "user",
        "add",
        "alice",
        "--role",
        "operator",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert added.returncode == 0 and "added user alice (operator)" in added.stdout
    [(stored,)] = query(data, "SELECT password_hash FROM account")
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    listing = taskdash_cli(data, "user", "list")
    assert listing.stdout.startswith("alice\toperator")
    again = taskdash_cli(data, "user", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")
    assert again.returncode == 1 and "exists already" in again.stderr
    changed = taskdash_cli(
        data, "user", "passwd", "alice", "--password-stdin", stdin="another long one\n"
    )
    assert changed.returncode == 0
    [(after,)] = query(data, "SELECT password_hash FROM account")
    assert after != stored
    assert taskdash_cli(data, "user", "remove", "alice").returncode == 0
    assert taskdash_cli(data, "user", "list").stdout == ""


def test_bad_user_input_says_what_to_fix(tmp_path: Path) -> None:
    data = tmp_path / "data"
    short = taskdash_cli(data, "user", "add", "bob", "--password-stdin", stdin="short\n")
    assert short.returncode == 1 and "at least 10 characters" in short.stderr
    name = taskdash_cli(data, "user", "add", "../x", "--password-stdin", stdin=PASSWORD + "\n")
    assert name.returncode == 1 and "not valid" in name.stderr
    role = taskdash_cli(
        data, "user", "add", "bob", "--role", "root", "--password-stdin", stdin=PASSWORD
    )
    assert role.returncode == 2 and "invalid choice" in role.stderr
    missing = taskdash_cli(data, "user", "remove", "nobody")
    assert missing.returncode == 1 and "no user named 'nobody'" in missing.stderr


def test_tokens_print_their_secret_once_and_are_stored_hashed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    created = taskdash_cli(data, "token", "create", "ci", "--role", "operator")
    assert created.returncode == 0
    secret = created.stdout.strip()
    assert secret.startswith("tdt_") and len(secret) > 40
    assert "shown only now" in created.stderr
    database = stored_bytes(data)
    assert secret.encode() not in database
    listing = taskdash_cli(data, "token", "list").stdout
    assert listing.startswith("ci\toperator\tservice\t") and secret not in listing
    assert "\tactive\t" in listing
    assert taskdash_cli(data, "token", "revoke", "ci").returncode == 0
    assert "\trevoked\t" in taskdash_cli(data, "token", "list").stdout
    taskdash_cli(
        data, "user", "add", "dora", "--role", "viewer", "--password-stdin", stdin=PASSWORD
    )
    stronger = taskdash_cli(
        data, "token", "create", "dora-admin", "--role", "admin", "--user", "dora"
    )
    assert stronger.returncode == 1 and "more rights than its user" in stronger.stderr
