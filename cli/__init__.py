"""The ``mycelia`` command (``main.py``). It needs the ``node`` extra —
click and rich, and for ``node run`` the daemon's own dependencies — so a
base install (the wallet's: protocol, API, client) says so instead of
failing with a traceback."""

try:
    import click  # noqa: F401
    import rich  # noqa: F401
except ImportError as exc:  # pragma: no cover - only without the node extra
    raise SystemExit(
        f"mycelia: the command needs the node extra ({exc.name} is missing): "
        "pip install 'mycelia[node]'"
    ) from None
