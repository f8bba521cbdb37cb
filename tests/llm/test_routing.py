"""Which client serves a model, and where the lean client sends it (rnix.llm.routing)."""

from __future__ import annotations

import pytest

from rnix.core.models import BUILTIN_ALIASES, CREDENTIALS, PROVIDERS
from rnix.llm.routing import LEAN, LITELLM, MOCK, OPENAI_PROTOCOL, NoEndpoint, client_for, endpoint


@pytest.mark.parametrize(
    ("model", "client"),
    [
        ("mock", MOCK),
        ("mock?fail=1", MOCK),
        ("openai/gpt-4o-mini", LEAN),
        ("openrouter/anthropic/claude-3.5-sonnet", LEAN),
        ("groq/llama-3.3-70b-versatile", LEAN),
        ("deepseek/deepseek-chat", LEAN),
        ("together_ai/meta-llama/Llama-3-70b", LEAN),
        ("ollama/llama3", LEAN),
        ("hosted_vllm/qwen", LEAN),
        ("anthropic/claude-haiku-4-5", LITELLM),
        ("gemini/gemini-2.5-flash", LITELLM),
        ("mistral/mistral-large-latest", LITELLM),
        ("text-completion-openai/gpt-3.5-turbo-instruct", LITELLM),
    ],
)
def test_openai_protocol_providers_take_the_lean_client(model: str, client: str) -> None:
    assert client_for(model, {}) == client


def test_rnix_llm_client_litellm_sends_every_real_model_through_litellm() -> None:
    forced = {"RNIX_LLM_CLIENT": "litellm"}
    assert client_for("openai/gpt-4o", forced) == LITELLM
    assert client_for("mock", forced) == MOCK
    assert client_for("openai/gpt-4o", {"RNIX_LLM_CLIENT": "auto"}) == LEAN
    assert client_for("openai/gpt-4o", {"RNIX_LLM_CLIENT": "bogus"}) == LEAN


def test_every_lean_provider_is_one_rnix_knows_and_checks_the_same_key_variable() -> None:
    for provider, spec in OPENAI_PROTOCOL.items():
        assert provider in PROVIDERS
        variable = CREDENTIALS.get(provider)
        if variable is not None:  # the variable `rnix compose up` checks is one the client reads
            assert variable in spec.key_variables, provider


def test_public_defaults_and_keys() -> None:
    env = {"OPENAI_API_KEY": "sk-o", "GROQ_API_KEY": "gsk", "TOGETHERAI_API_KEY": "tg"}
    openai = endpoint("openai/gpt-4o", None, env)
    assert (openai.url, openai.key, openai.model) == (
        "https://api.openai.com/v1/chat/completions",
        "sk-o",
        "gpt-4o",
    )
    groq = endpoint("groq/llama-3.3-70b-versatile", None, env)
    assert groq.url == "https://api.groq.com/openai/v1/chat/completions" and groq.key == "gsk"
    router = endpoint("openrouter/openai/gpt-4o", None, env)
    assert router.url == "https://openrouter.ai/api/v1/chat/completions" and router.model == "openai/gpt-4o"
    assert router.key is None  # no Authorization header: the provider says 401, with rnix's hint
    assert endpoint("together_ai/x", None, env).key == "tg"
    assert endpoint("together_ai/x", None, {**env, "TOGETHER_API_KEY": "first"}).key == "first"


def test_api_base_wins_then_the_providers_base_variable() -> None:
    env = {"OPENAI_BASE_URL": "https://proxy.example/v1/"}
    assert endpoint("openai/m", None, env).url == "https://proxy.example/v1/chat/completions"
    assert (
        endpoint("openai/m", "http://127.0.0.1:8000/v1", env).url
        == "http://127.0.0.1:8000/v1/chat/completions"
    )


def test_ollama_is_served_under_v1_without_a_key() -> None:
    assert endpoint("ollama/llama3", None, {}).url == "http://localhost:11434/v1/chat/completions"
    assert (
        endpoint("ollama_chat/llama3", "http://gpu:11434", {}).url == "http://gpu:11434/v1/chat/completions"
    )
    same = endpoint("ollama/llama3", "http://gpu:11434/v1", {})
    assert same.url == "http://gpu:11434/v1/chat/completions" and same.key is None and same.model == "llama3"


def test_a_self_hosted_provider_needs_an_api_base() -> None:
    with pytest.raises(NoEndpoint, match=r"hosted_vllm/qwen needs an api_base .* or HOSTED_VLLM_API_BASE"):
        endpoint("hosted_vllm/qwen", None, {})
    assert endpoint("hosted_vllm/qwen", None, {"HOSTED_VLLM_API_BASE": "http://v:8000/v1"}).model == "qwen"


def test_the_builtin_openai_aliases_take_the_lean_client() -> None:
    lean = {a.name for a in BUILTIN_ALIASES if client_for(a.model, {}) == LEAN}
    assert {"gpt-4o", "gpt-4o-mini", "gpt-5", "deepseek", "llama"} <= lean
