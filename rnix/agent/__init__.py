"""The agent side: the thin built-in runtime, the gateway wire protocol and its client.

Everything here imports only the standard library, because it runs inside every agent process.
"""
