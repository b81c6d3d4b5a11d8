"""``reencrypt``: rewrite a store's payloads with the active key, as version 2 envelopes."""

from __future__ import annotations

import click

from ..copying import copy_sessions
from ..manager import Manager
from ..urls import redact_url
from ._app import main
from ._common import (
    EXIT_CONFLICT,
    EXIT_USAGE,
    CLIError,
    console,
    emit_json,
    json_option,
    open_store,
)
from ._render import plural


@main.command()
@click.option("--from", "source_url", required=True, help="The store to read.")
@click.option("--to", "target_url", required=True, help="The new, empty store to write.")
@click.option(
    "--allow-plaintext",
    is_flag=True,
    help="Also read payloads stored in clear (to encrypt a store written without a keyring).",
)
@click.option("--migrate", is_flag=True, help="Migrate the target PostgreSQL schema first.")
@json_option
def reencrypt(
    source_url: str, target_url: str, allow_plaintext: bool, migrate: bool, as_json: bool
) -> None:
    """Copy every session into a new store, encrypted with the active key (envelope version 2).

    The keyring comes from the configuration (session.encryption, or
    $SESSIONS_DB_ENCRYPTION_KEYS and $SESSIONS_DB_ENCRYPTION_ACTIVE): it must hold
    every key the source was written with. Use it to retire an old key, to bind
    roles and owners into envelopes written by older versions, or (with
    --allow-plaintext) to encrypt a store written in clear. Every payload is
    decrypted and checked on the way, checkpoint checksums are verified and
    recomputed. The source is left as it is: switch to the new store afterwards.
    """
    if source_url == target_url:
        raise CLIError("--from and --to name the same store", EXIT_USAGE)
    with (
        open_store(source_url) as source,
        open_store(target_url, create=True, migrate=migrate) as target,
    ):
        keyring = target.privacy.keyring
        if keyring is None:
            raise CLIError(
                "reencrypt needs the keyring: configure session.encryption or set "
                "SESSIONS_DB_ENCRYPTION_KEYS",
                EXIT_USAGE,
            )
        if target.list_agents():
            raise CLIError("the target store is not empty", EXIT_CONFLICT)
        reader = source
        if allow_plaintext and not keyring.allow_plaintext:
            # Shares the source's backend, which ``open_store`` closes.
            reader = Manager(source.backend, keyring=keyring.allowing_plaintext())
        copied = copy_sessions(reader, target)
    if as_json:
        emit_json(
            {
                "from": redact_url(source_url),
                "to": redact_url(target_url),
                "sessions": copied,
                "active_key": keyring.active,
            }
        )
    else:
        console().print(
            f"re-encrypted {plural(copied, 'session')} with key {keyring.active!r} "
            f"into {redact_url(target_url)}",
            markup=False,
        )
