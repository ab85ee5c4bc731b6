"""The `mobikectl` console script. Imports the CLI inside a guard, so a Ctrl-C while
Python is still loading the program ends like one later on: one line, exit 130."""

import sys


def main() -> None:
    try:
        from mobikectl.cli import main as cli_main
    except KeyboardInterrupt:
        sys.stderr.write("mobikectl: interrupted\n")
        sys.exit(130)
    cli_main()
