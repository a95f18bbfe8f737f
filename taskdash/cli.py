"""`python -m taskdash`: manage users and API tokens in the installation's database.

    python -m taskdash user add NAME [--role viewer|operator|admin] [--password-stdin]
    python -m taskdash user list | remove NAME | passwd NAME [--password-stdin]
    python -m taskdash token create NAME [--role ROLE] [--user NAME]
    python -m taskdash token list | revoke NAME

It reads the same TASKDASH_* settings (and .env) as the server, so it works on the server's
database whether the server runs or not.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable

from taskdash.core.config import ConfigError, load_settings
from taskdash.core.db import close_database, open_database
from taskdash.core.errors import TaskdashError
from taskdash.core.models import Role
from taskdash.operations import accounts

ROLES = [role.value for role in Role]


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m taskdash", description=__doc__.split("\n")[0])
    groups = top.add_subparsers(dest="group", required=True)

    user = groups.add_parser("user", help="people who log in to the dashboard")
    users = user.add_subparsers(dest="action", required=True)
    add = users.add_parser("add", help="add a user (asks for the password)")
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, default=Role.VIEWER.value)
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    users.add_parser("list", help="list the users")
    remove = users.add_parser("remove", help="remove a user with their sessions and tokens")
    remove.add_argument("name")
    passwd = users.add_parser("passwd", help="set a new password (ends the user's sessions)")
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true")

    token = groups.add_parser("token", help="API tokens (Authorization: Bearer ...)")
    tokens = token.add_subparsers(dest="action", required=True)
    create = tokens.add_parser("create", help="create a token and print its secret once")
    create.add_argument("name")
    create.add_argument("--role", choices=ROLES, default=Role.VIEWER.value)
    create.add_argument("--user", help="the user it acts for (default: a service token)")
    tokens.add_parser("list", help="list the tokens (never their secrets)")
    revoke = tokens.add_parser("revoke", help="revoke a token")
    revoke.add_argument("name")
    return top


def read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Password again: ") != first:
        raise TaskdashError("the two passwords differ")
    return first


async def user_command(args: argparse.Namespace) -> None:
    if args.action == "add":
        password = read_password(args.password_stdin)
        user = await accounts.add_user(args.name, password, Role(args.role))
        print(f"added user {user.name} ({user.role.value})")
    elif args.action == "list":
        for user in await accounts.list_users():
            print(f"{user.name}\t{user.role.value}\tsince {user.created_at:%Y-%m-%d}")
    elif args.action == "remove":
        await accounts.remove_user(args.name)
        print(f"removed user {args.name}")
    elif args.action == "passwd":
        await accounts.set_password(args.name, read_password(args.password_stdin))
        print(f"new password for {args.name}; their sessions have ended")


async def token_command(args: argparse.Namespace) -> None:
    if args.action == "create":
        owner = await accounts.get_user(args.user) if args.user else None
        created = await accounts.create_token(args.name, Role(args.role), owner)
        print(created.secret)
        print(
            f"token {created.token.name} ({created.token.role.value}): the line above is its "
            "secret, shown only now",
            file=sys.stderr,
        )
    elif args.action == "list":
        for token in await accounts.list_tokens():
            owner_name = token.user.name if token.user else "service"
            state = "revoked" if token.revoked_at else "active"
            used = f"{token.last_used_at:%Y-%m-%d %H:%M}" if token.last_used_at else "never used"
            print(f"{token.name}\t{token.role.value}\t{owner_name}\t{token.hint}…\t{state}\t{used}")
    elif args.action == "revoke":
        await accounts.revoke_token(args.name)
        print(f"revoked token {args.name}")


async def run(args: argparse.Namespace) -> None:
    command: Callable[[argparse.Namespace], Awaitable[None]] = (
        user_command if args.group == "user" else token_command
    )
    database = await open_database(load_settings())
    try:
        await command(args)
    finally:
        await close_database(database)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        asyncio.run(run(args))
    except ConfigError as exc:
        print(f"taskdash: {exc}", file=sys.stderr)
        return 2
    except TaskdashError as exc:
        print(f"taskdash: {exc.message}", file=sys.stderr)
        return 1
    return 0
