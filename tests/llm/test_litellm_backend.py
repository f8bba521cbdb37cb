"""What is litellm's own in LiteLLMBackend: its boilerplate stripped from provider messages.

Its behaviour against a loopback server (usage, errors, Retry-After, timeouts, masking) is tested
with the lean client's, by the same tests: tests/llm/test_backends.py.
"""

from __future__ import annotations

from rnix.llm.litellm_backend import plain


def test_provider_messages_lose_litellms_boilerplate() -> None:
    raw = (
        "litellm.BadRequestError: LLM Provider NOT provided. You passed model=haiku\n Pass model as E.g. "
        "For 'Huggingface' inference endpoints pass in `completion(model='huggingface/starcoder',..)` "
        "Learn more: https://docs.litellm.ai/docs/providers"
    )
    assert plain(raw) == "LLM Provider NOT provided. You passed model=haiku"
    auth = "litellm.AuthenticationError: AuthenticationError: OpenAIException - Incorrect API key provided"
    assert plain(auth) == "Incorrect API key provided"
