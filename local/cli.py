"""`voice-agent`: one argparse entry point; each command module contributes its subcommands.

To add commands (`serve`, `call`, `demo`, ...), write a module with `register(subparsers)` that adds
parsers and sets `handler=<callable(args) -> int>` on each, and list it in COMMAND_MODULES.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

COMMAND_MODULES: tuple[str, ...] = (
    "shared.tenancy.admin_cli",
    "local.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voice-agent", description="Programmable phone voice agent")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
