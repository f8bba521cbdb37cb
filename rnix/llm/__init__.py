"""LLM access for the supervisor's gateway: backends (mock, the lean OpenAI-protocol client, litellm),
routing between them, offline token counting, retries.

Nothing here is imported by agent processes, and importing this package imports neither litellm,
aiohttp nor tiktoken: they load on first use.
"""
