"""The model seam: the `ChatModel` protocol, its backends, middleware and the structured-output helper.

Build a model with `from_uri` ("openai:MODEL@BASE_URL", "anthropic:MODEL", "local", ...), wrap it with
`build_stack` for retries, a concurrency limit and metering, and ask for validated JSON with
`generate_structured`.
"""

from flexlearn.models.anthropic import AnthropicModel
from flexlearn.models.base import ChatModel, GenerationOptions, Message, Prompt, PromptKind, Reply, Usage
from flexlearn.models.function import FunctionCall, FunctionModel
from flexlearn.models.middleware import (
    LimitedModel,
    Meter,
    MeteredModel,
    RetryingModel,
    RetryPolicy,
    RoleStats,
    build_stack,
)
from flexlearn.models.openai_compat import OpenAICompatModel, structured_mode_cache_clear
from flexlearn.models.structured import StructuredResult, extract_json_object, generate_structured
from flexlearn.models.uri import from_uri

__all__ = [
    "AnthropicModel",
    "ChatModel",
    "FunctionCall",
    "FunctionModel",
    "GenerationOptions",
    "LimitedModel",
    "Message",
    "Meter",
    "MeteredModel",
    "OpenAICompatModel",
    "Prompt",
    "PromptKind",
    "Reply",
    "RetryPolicy",
    "RetryingModel",
    "RoleStats",
    "StructuredResult",
    "Usage",
    "build_stack",
    "extract_json_object",
    "from_uri",
    "generate_structured",
    "structured_mode_cache_clear",
]
