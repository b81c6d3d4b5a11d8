"""``python -m sessions_db``: the command line."""

from .cli import main

main(prog_name="sessions-db")
