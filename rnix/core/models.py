"""Models before anything runs: aliases, providers and their credentials. Pure (the environment is
passed in).

A model is written as a litellm model string (`provider/name`, e.g. `anthropic/claude-haiku-4-5`),
`mock` (the built-in offline model, with options: `mock?fail=1`), or an *alias*: a short name from
rnix's built-in table (`haiku`, `sonnet`, `gpt-4o-mini`, ...), from the user's `models.yaml`, or from
the compose file's `models:` section (later sources win). An alias may also give an `api_base` and
limits.

`check(spec, aliases, environ)` returns every problem at once, each at the agent's line: an unknown
alias or provider (with a did-you-mean), and a provider whose credential variable is not set (naming
the variable and the agents that need it). A model with an `api_base` is a local or self-hosted
server: its key is optional, so a missing one is not an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from rnix.core.model import AgentSpec, ComposeSpec, ModelAlias
from rnix.core.problems import Problem, did_you_mean

__all__ = ["BUILTIN_ALIASES", "ModelAlias", "aliases_by_name", "check", "resolve"]


BUILTIN_ALIASES: tuple[ModelAlias, ...] = tuple(
    ModelAlias(name, model)
    for name, model in (
        ("haiku", "anthropic/claude-haiku-4-5"),
        ("sonnet", "anthropic/claude-sonnet-4-6"),
        ("opus", "anthropic/claude-opus-4-8"),
        ("gpt-5", "openai/gpt-5"),
        ("gpt-5-mini", "openai/gpt-5-mini"),
        ("gpt-4.1", "openai/gpt-4.1"),
        ("gpt-4.1-mini", "openai/gpt-4.1-mini"),
        ("gpt-4o", "openai/gpt-4o"),
        ("gpt-4o-mini", "openai/gpt-4o-mini"),
        ("o4-mini", "openai/o4-mini"),
        ("gemini-pro", "gemini/gemini-2.5-pro"),
        ("gemini-flash", "gemini/gemini-2.5-flash"),
        ("deepseek", "deepseek/deepseek-chat"),
        ("llama", "groq/llama-3.3-70b-versatile"),
        ("mistral", "mistral/mistral-large-latest"),
    )
)

# The variable each provider's key comes from (litellm's names). Providers that need no key (local
# servers) map to None; providers whose credentials take several forms (cloud accounts) are absent:
# rnix cannot tell from one variable whether they are set, and leaves them to the provider.
CREDENTIALS: Mapping[str, str | None] = {
    "openai": "OPENAI_API_KEY",
    "text-completion-openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "gemini": "GEMINI_API_KEY",
    "groq": "GROQ_API_KEY",
    "mistral": "MISTRAL_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY",
    "openrouter": "OPENROUTER_API_KEY",
    "together_ai": "TOGETHERAI_API_KEY",
    "cohere": "COHERE_API_KEY",
    "cohere_chat": "COHERE_API_KEY",
    "xai": "XAI_API_KEY",
    "fireworks_ai": "FIREWORKS_AI_API_KEY",
    "perplexity": "PERPLEXITYAI_API_KEY",
    "cerebras": "CEREBRAS_API_KEY",
    "deepinfra": "DEEPINFRA_API_KEY",
    "ollama": None,
    "ollama_chat": None,
    "hosted_vllm": None,
    "vllm": None,
    "lm_studio": None,
    "llamafile": None,
    "openai_like": None,
    "custom_openai": None,
}

# Chat providers litellm 1.106 knows (litellm.provider_list, chat-capable ones); others are typos.
PROVIDERS: frozenset[str] = frozenset(
    {
        *CREDENTIALS,
        "ai21", "ai21_chat", "aiml", "amazon_nova", "anthropic_text", "azure", "azure_ai", "baseten",
        "bedrock", "cloudflare", "codestral", "dashscope", "databricks", "featherless_ai", "friendliai",
        "github", "github_copilot", "huggingface", "hyperbolic", "lambda_ai", "litellm_proxy", "meta_llama",
        "minimax", "moonshot", "nebius", "novita", "nscale", "nvidia_nim", "oci", "predibase", "replicate",
        "sagemaker", "sagemaker_chat", "sambanova", "snowflake", "triton", "vercel_ai_gateway", "vertex_ai",
        "vertex_ai_beta", "volcengine", "watsonx", "xinference", "zai",
    }
)  # fmt: skip


def aliases_by_name(*sources: tuple[ModelAlias, ...]) -> dict[str, ModelAlias]:
    """The aliases in effect: built-in first, then each source in order (a later one wins)."""
    table = {a.name: a for a in BUILTIN_ALIASES}
    for source in sources:
        table.update({a.name: a for a in source})
    return table


def provider_of(model: str) -> str | None:
    """`anthropic/claude-x` -> `anthropic`; None for `mock` and names without a provider."""
    name = model.split("?", 1)[0]
    return name.split("/", 1)[0] if "/" in name else None


def is_mock(model: str) -> bool:
    return model.split("?", 1)[0] == "mock"


def resolve(spec: ComposeSpec, aliases: Mapping[str, ModelAlias]) -> ComposeSpec:
    """Every agent's model alias replaced by the model it stands for (and its api_base, unless the
    agent sets its own). Names that are not aliases are left for `check` to judge."""
    agents = []
    for agent in spec.agents:
        alias = aliases.get(agent.model)
        if alias is None:
            agents.append(agent)
            continue
        api_base = (
            agent.api_base if "api_base" in agent.explicit or alias.api_base is None else alias.api_base
        )
        agents.append(
            replace(
                agent,
                model=alias.model,
                api_base=api_base,
                max_concurrency=alias.max_concurrency,
                rpm=alias.rpm,
            )
        )
    return replace(spec, agents=tuple(agents))


def check(
    spec: ComposeSpec,
    aliases: Mapping[str, ModelAlias],
    environ: Mapping[str, str],
    *,
    credentials: bool = True,
) -> list[Problem]:
    """Every model problem of the (resolved) spec; see the module docstring."""
    problems: list[Problem] = []
    missing: dict[str, list[AgentSpec]] = {}
    for agent in spec.agents:
        model = agent.model
        if is_mock(model):
            continue
        provider = provider_of(model)
        key = f"agents.{agent.name}.model"
        if provider is None:
            hint = did_you_mean(model, list(aliases)) or " (see `rnix models`)"
            problems.append(
                Problem(
                    spec.file,
                    agent.line,
                    key,
                    f"unknown model {model!r}: not an alias, and a model needs a provider, like "
                    f"openai/{model}{hint}",
                )
            )
            continue
        if provider not in PROVIDERS:
            problems.append(
                Problem(
                    spec.file,
                    agent.line,
                    key,
                    f"unknown provider {provider!r} in {model!r}{did_you_mean(provider, sorted(PROVIDERS))}",
                )
            )
            continue
        variable = CREDENTIALS.get(provider)
        if credentials and variable and agent.api_base is None and not environ.get(variable):
            missing.setdefault(variable, []).append(agent)
    for variable, agents in missing.items():
        names = ", ".join(a.name for a in agents)
        first = agents[0]
        problems.append(
            Problem(
                spec.file,
                first.line,
                f"agents.{first.name}.model",
                f"{variable} is not set: {first.model} needs it (agents: {names}); set it in the "
                "environment or in .env next to the compose file",
            )
        )
    return problems
