"""How a model was built, so it can be built again elsewhere: a Ray worker rebuilds the run's models from their
recipes (`flexlearn.loop.ray_executor`) instead of receiving live clients, which hold sockets, a concurrency limit
bound to one event loop, and a meter.

`flexlearn.connect` remembers the recipe of every model it returns; `recipe_of` finds it again (None for a model
built any other way).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from weakref import WeakKeyDictionary

from flexlearn.models.base import ChatModel, PromptKind
from flexlearn.models.middleware import Meter, RetryPolicy, build_stack
from flexlearn.models.uri import from_uri


@dataclass(frozen=True)
class ModelRecipe:
    """What `connect` was given, resolved where the environment decided it: the URI (FLEX_MODEL's when none was
    given), the prompt kind the model ended up with, the request timeout and the retry policy. The concurrency
    limit and the meter are the builder's own."""

    uri: str
    prompt_kind: PromptKind
    timeout: float
    retry: RetryPolicy | None

    def build(self, *, concurrency: int, meter: Meter) -> ChatModel:
        """The model again, with its own client, at most `concurrency` calls in flight, its calls metered in
        `meter`, and this recipe remembered."""
        model = from_uri(self.uri, prompt_kind=self.prompt_kind, timeout=self.timeout)
        return remember(build_stack(model, max_concurrency=max(1, concurrency), retry=self.retry, meter=meter), self)


_RECIPES: WeakKeyDictionary[ChatModel, ModelRecipe] = WeakKeyDictionary()


def resolve_uri(uri: str | None) -> str:
    """The URI `from_uri` builds from: `uri`, else FLEX_MODEL, else ``local``."""
    if uri is None:
        uri = os.environ.get("FLEX_MODEL", "").strip() or "local"
    return uri.strip()


def remember(model: ChatModel, recipe: ModelRecipe) -> ChatModel:
    """`model`, its recipe remembered (for as long as the model lives)."""
    _RECIPES[model] = recipe
    return model


def recipe_of(model: ChatModel) -> ModelRecipe | None:
    """The recipe `model` was built from by `flexlearn.connect`, or None."""
    try:
        return _RECIPES.get(model)
    except TypeError:  # a model that cannot be weakly referenced was not built there
        return None
