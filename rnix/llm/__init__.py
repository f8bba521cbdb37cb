"""LLM access for the supervisor's gateway: backends (mock, litellm), offline token counting, retries.

Nothing here is imported by agent processes, and importing this package imports neither litellm nor
tiktoken: they load on first use.
"""
