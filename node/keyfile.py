"""The node key file format now lives in :mod:`mycelia.client.keyfile` (wallet
keys share it, and a wallet needs none of the daemon); this name is kept for
code that still imports it from here."""

from mycelia.client.keyfile import *  # noqa: F403
from mycelia.client.keyfile import __all__, _read_private  # noqa: F401
