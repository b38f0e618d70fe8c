"""The wallet RPC's contract in Python: the JSON encoding of its values.

Both sides use it: the node's RPC server (``mycelia.node.rpc``) and the
Python client (``mycelia.client``). It imports only ``mycelia.protocol``.
"""
