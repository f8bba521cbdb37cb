"""Which client serves a model, and where the lean client sends its calls. Pure (environment passed in).

`client_for(model, environ)`: `mock` for the offline model; `openai` (the lean client,
rnix.llm.openai_http) for providers that speak OpenAI's chat-completions protocol, listed in
`OPENAI_PROTOCOL`; `litellm` for every other provider. `RNIX_LLM_CLIENT=litellm` sends every model
through litellm (to compare the two, or as an escape hatch); `auto` (or unset) is the default.

`endpoint(model, api_base, environ)`: the URL, the API key (None: no Authorization header) and the
model name the provider knows, resolved as litellm resolves them: the model's `api_base`, else the
provider's base variable (`OPENAI_BASE_URL`, `GROQ_API_BASE`, ...), else its public default; the
first key variable that is set. Ollama's base is its server root, as litellm takes it; its
OpenAI-compatible API is under `/v1`, which is added when missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from rnix.core.models import is_mock, provider_of

CLIENT_VARIABLE = "RNIX_LLM_CLIENT"
MOCK, LEAN, LITELLM = "mock", "openai", "litellm"
CHOICES = ("auto", LITELLM)


@dataclass(frozen=True)
class Provider:
    default_base: str | None  # None: the model needs an api_base (a self-hosted server)
    base_variables: tuple[str, ...] = ()
    key_variables: tuple[str, ...] = ()
    under_v1: bool = False  # the base is a server root; the OpenAI API lives under /v1


_OLLAMA = Provider("http://localhost:11434", ("OLLAMA_API_BASE",), ("OLLAMA_API_KEY",), under_v1=True)

_OPENAI_BASE = ("OPENAI_BASE_URL", "OPENAI_API_BASE")

OPENAI_PROTOCOL: Mapping[str, Provider] = {
    "openai": Provider("https://api.openai.com/v1", _OPENAI_BASE, ("OPENAI_API_KEY",)),
    "custom_openai": Provider(None, _OPENAI_BASE, ("OPENAI_API_KEY",)),
    "openai_like": Provider(None, (), ("OPENAI_LIKE_API_KEY",)),
    "openrouter": Provider(
        "https://openrouter.ai/api/v1", ("OPENROUTER_API_BASE",), ("OPENROUTER_API_KEY", "OR_API_KEY")
    ),
    "groq": Provider("https://api.groq.com/openai/v1", ("GROQ_API_BASE",), ("GROQ_API_KEY",)),
    "deepseek": Provider("https://api.deepseek.com/beta", ("DEEPSEEK_API_BASE",), ("DEEPSEEK_API_KEY",)),
    "together_ai": Provider(
        "https://api.together.ai/v1",
        ("TOGETHER_AI_API_BASE",),
        ("TOGETHER_API_KEY", "TOGETHER_AI_API_KEY", "TOGETHERAI_API_KEY", "TOGETHER_AI_TOKEN"),
    ),
    "cerebras": Provider("https://api.cerebras.ai/v1", ("CEREBRAS_API_BASE",), ("CEREBRAS_API_KEY",)),
    "ollama": _OLLAMA,
    "ollama_chat": _OLLAMA,
    "hosted_vllm": Provider(None, ("HOSTED_VLLM_API_BASE",), ("HOSTED_VLLM_API_KEY",)),
    "lm_studio": Provider(None, ("LM_STUDIO_API_BASE",), ("LM_STUDIO_API_KEY",)),
    "llamafile": Provider("http://127.0.0.1:8080/v1", ("LLAMAFILE_API_BASE",), ("LLAMAFILE_API_KEY",)),
}  # fmt: skip


def setting(environ: Mapping[str, str]) -> str:
    """`RNIX_LLM_CLIENT` as a choice; anything else than `litellm` means `auto`."""
    value = environ.get(CLIENT_VARIABLE, "").strip().lower()
    return LITELLM if value == LITELLM else "auto"


def client_for(model: str, environ: Mapping[str, str]) -> str:
    if is_mock(model):
        return MOCK
    if setting(environ) == LITELLM:
        return LITELLM
    return LEAN if provider_of(model) in OPENAI_PROTOCOL else LITELLM


@dataclass(frozen=True)
class Endpoint:
    url: str  # .../chat/completions
    key: str | None
    model: str  # as the provider knows it: without rnix's provider prefix
    provider: str


class NoEndpoint(ValueError):
    """The model names no api_base and its provider has no default one."""


def endpoint(model: str, api_base: str | None, environ: Mapping[str, str]) -> Endpoint:
    provider = provider_of(model) or ""
    spec = OPENAI_PROTOCOL.get(provider, OPENAI_PROTOCOL["openai_like"])
    base = api_base or next((environ[v] for v in spec.base_variables if environ.get(v)), spec.default_base)
    if not base:
        names = " or ".join(spec.base_variables) or "api_base"
        raise NoEndpoint(f"{model} needs an api_base (the server's URL, e.g. http://host:8000/v1) or {names}")
    base = base.rstrip("/")
    if spec.under_v1 and not base.endswith("/v1"):
        base += "/v1"
    key = next((environ[v] for v in spec.key_variables if environ.get(v)), None)
    name = model.split("?", 1)[0].split("/", 1)[1] if "/" in model else model
    return Endpoint(f"{base}/chat/completions", key, name, provider)
