"""``python -m mycelia.cli``: the same as the ``mycelia`` console script."""

from mycelia.cli.main import cli

if __name__ == "__main__":
    cli(prog_name="mycelia")
