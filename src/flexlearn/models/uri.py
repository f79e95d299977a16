"""Model URIs: one string names a backend and a model.

    openai:MODEL@BASE_URL       any OpenAI-compatible server, e.g. openai:qwen2.5-7b@http://127.0.0.1:8000/v1
    openai:MODEL                api.openai.com, e.g. openai:gpt-4o-mini
    anthropic:MODEL             the Anthropic Messages API, e.g. anthropic:claude-sonnet-4-5
    anthropic:MODEL@BASE_URL    an Anthropic-compatible gateway or proxy (the API root, without /v1)
    local                       the embedded default model (needs the `local` extra)
    local:/path/model.gguf      a GGUF file run in-process

Environment: FLEX_MODEL is the URI when none is given; FLEX_API_KEY is the API key, else OPENAI_API_KEY for
openai URIs and ANTHROPIC_API_KEY for anthropic ones; FLEX_PROMPT_KIND (chat | completion) picks the prompt
rendering when the caller does not (anthropic serves chat only).
"""

from __future__ import annotations

import os
import re

from flexlearn.errors import ConfigError
from flexlearn.models.anthropic import ANTHROPIC_BASE_URL, AnthropicModel
from flexlearn.models.base import ChatModel, PromptKind
from flexlearn.models.http import redact
from flexlearn.models.openai_compat import OpenAICompatModel

OPENAI_BASE_URL = "https://api.openai.com/v1"

_EXAMPLES = (
    "valid examples: 'openai:gpt-4o-mini', 'openai:qwen2.5-7b-instruct@http://127.0.0.1:8000/v1', "
    "'anthropic:claude-sonnet-4-5', 'local', 'local:/models/model.gguf'"
)
# Split at the first "@" that starts a URL, so a model name may itself contain "@" (e.g. "org/model@rev").
_MODEL_AT_URL = re.compile(r"^(?P<model>.+?)@(?P<url>https?://\S+)$")


def api_key_from_env(provider_var: str = "OPENAI_API_KEY") -> str | None:
    """FLEX_API_KEY, else `provider_var` (OPENAI_API_KEY, ANTHROPIC_API_KEY), else None (an empty variable
    counts as unset)."""
    for var in ("FLEX_API_KEY", provider_var):
        value = os.environ.get(var, "").strip()
        if value:
            return value
    return None


def parse_prompt_kind(value: PromptKind | str | None, where: str = "the prompt kind") -> PromptKind | None:
    """`value` as a PromptKind (None or empty: None); ConfigError naming `where` for anything else."""
    if value is None or isinstance(value, PromptKind):
        return value
    text = value.strip().lower()
    if not text:
        return None
    try:
        return PromptKind(text)
    except ValueError:
        raise ConfigError(f"{where} must be 'chat' or 'completion', got {value!r}") from None


def _prompt_kind(explicit: PromptKind | str | None) -> PromptKind | None:
    if explicit is not None:
        return parse_prompt_kind(explicit, "--prompt-kind (or FLEX_PROMPT_KIND)")
    return parse_prompt_kind(os.environ.get("FLEX_PROMPT_KIND", ""), "FLEX_PROMPT_KIND")


def from_uri(uri: str | None, *, prompt_kind: PromptKind | str | None = None, timeout: float = 120.0) -> ChatModel:
    """Build the model a URI names (see the module doc for the grammar). Raises `ConfigError` for a bad URI.

    `uri=None` reads FLEX_MODEL, and falls back to ``local``. `prompt_kind=None` reads FLEX_PROMPT_KIND, and
    falls back to the backend's default (chat for openai; anthropic serves only chat and refuses completion).
    `timeout` is the per-request HTTP timeout.
    """
    if uri is None:
        uri = os.environ.get("FLEX_MODEL", "").strip() or "local"
    uri = uri.strip()
    kind = _prompt_kind(prompt_kind)
    scheme, sep, rest = uri.partition(":")
    scheme = scheme.lower()

    if scheme == "openai":
        model, base_url = _model_and_base_url(uri, sep, rest, OPENAI_BASE_URL)
        return OpenAICompatModel(
            model,
            base_url,
            api_key=api_key_from_env(),
            prompt_kind=kind or PromptKind.CHAT,
            timeout=timeout,
        )

    if scheme == "local":
        path = (rest.strip() or None) if sep else None
        try:
            from flexlearn.models.local import LocalModel

            # The backend may import llama_cpp only here, so this is inside the try too.
            model = LocalModel.from_uri_path(path)
        except ImportError as exc:
            raise ConfigError(f"the local backend needs: pip install 'flexlearn[local]' ({exc})") from exc
        if kind is not None:
            # The local backend picks its own default kind for the model it loads; an explicit kind (argument
            # or FLEX_PROMPT_KIND) overrides it.
            try:
                model.prompt_kind = kind
            except AttributeError as exc:
                raise ConfigError(f"the local backend does not let the prompt kind be set ({exc})") from exc
        return model

    if scheme == "anthropic":
        model, base_url = _model_and_base_url(uri, sep, rest, ANTHROPIC_BASE_URL)
        if kind is not None and kind is not PromptKind.CHAT:
            raise ConfigError(
                f"model URI {redact(uri)!r}: the Anthropic API serves chat prompts only, but prompt kind "
                f"{kind.value!r} was asked for (by the caller or FLEX_PROMPT_KIND)"
            )
        api_key = api_key_from_env("ANTHROPIC_API_KEY")
        # The official endpoint always needs a key, so say so now rather than as an HTTP 401 mid-run. A gateway
        # named with @BASE_URL may add its own credentials, so there a missing key is allowed.
        if api_key is None and base_url == ANTHROPIC_BASE_URL:
            raise ConfigError(
                f"model URI {redact(uri)!r} needs an API key: set ANTHROPIC_API_KEY (or FLEX_API_KEY) to your "
                "Anthropic API key"
            )
        return AnthropicModel(model, api_key=api_key, base_url=base_url, timeout=timeout)

    raise ConfigError(f"unknown model URI {redact(uri)!r}; {_EXAMPLES}")


def _model_and_base_url(uri: str, sep: str, rest: str, default_base_url: str) -> tuple[str, str]:
    """Split ``MODEL[@BASE_URL]`` (the part after the scheme), shared by the openai and anthropic schemes."""
    if not sep or not rest.strip() or rest.strip().startswith("@"):
        raise ConfigError(f"model URI {redact(uri)!r} names no model; {_EXAMPLES}")
    rest = rest.strip()
    match = _MODEL_AT_URL.match(rest)
    if match:
        model, base_url = match.group("model"), match.group("url").rstrip("/")
    elif "@" in rest:
        raise ConfigError(
            f"model URI {redact(uri)!r}: the part after '@' must be a base URL starting with http:// or https://; "
            f"{_EXAMPLES}"
        )
    else:
        model, base_url = rest, default_base_url
    if not model.strip() or any(c.isspace() for c in model):
        raise ConfigError(f"model URI {redact(uri)!r} has an empty or malformed model name; {_EXAMPLES}")
    return model, base_url
