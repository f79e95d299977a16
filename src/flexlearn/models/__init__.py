"""The model seam: what a model of your own implements, and the pieces `flexlearn.connect` builds on.

Most code needs only `flexlearn.connect(uri)`. To plug in another backend, implement `ChatModel` (a `name`, a
`prompt_kind`, `async generate(prompt, *, role, schema, options) -> Reply` and `async aclose()`) and wrap it with
`build_stack` for retries, a concurrency limit and per-role metering. For tests, `FunctionModel` answers from a
Python function and `TestModel` answers by itself (schema-valid JSON for structured calls, a fixed text
otherwise). The modules under `flexlearn.models` (middleware, structured output, the HTTP backends) are internal.
"""

from flexlearn.models.anthropic import AnthropicModel
from flexlearn.models.base import ChatModel, GenerationOptions, Message, Prompt, PromptKind, Reply, Usage
from flexlearn.models.function import FunctionCall, FunctionModel
from flexlearn.models.middleware import Meter, RetryPolicy, build_stack
from flexlearn.models.openai_compat import OpenAICompatModel
from flexlearn.models.testing import TestModel
from flexlearn.models.uri import from_uri

__all__ = [
    "AnthropicModel",
    "ChatModel",
    "FunctionCall",
    "FunctionModel",
    "GenerationOptions",
    "Message",
    "Meter",
    "OpenAICompatModel",
    "Prompt",
    "PromptKind",
    "Reply",
    "RetryPolicy",
    "TestModel",
    "Usage",
    "build_stack",
    "from_uri",
]
