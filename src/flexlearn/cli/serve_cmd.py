"""`flex serve`: a local GGUF model (an embedded one by name, or any file) behind an OpenAI-compatible HTTP server.

It is llama-cpp-python's own server (`llama_cpp.server`), started the way this machine can run it: the model's
native code is checked first (`models.native_check`), and where llama.cpp's default CPU kernels fault (AMX on hosts
that report it without enabling it) the model is loaded without them. `python -m llama_cpp.server` has no option
for that, so on such a host it dies on its first real request.
"""

from __future__ import annotations

import importlib.util
from typing import Annotated

import typer

from flexlearn.cli.common import Command, examples, handle_errors
from flexlearn.cli.output import err
from flexlearn.errors import ConfigError

SERVER_HINT = "pip install 'flexlearn[serve]'"


def register(app: typer.Typer) -> None:
    app.command(
        "serve",
        cls=Command,
        epilog=examples(
            "flex serve --model local:qwen2.5-coder-1.5b --port 8000",
            "export FLEX_MODEL=openai:qwen2.5-coder-1.5b@http://127.0.0.1:8000/v1",
            "flex serve --model local:/models/any.gguf --host 0.0.0.0 --port 8080",
        ),
    )(handle_errors(serve_cmd))


def serve_cmd(
    model: Annotated[
        str,
        typer.Option(
            "--model",
            help="A local model URI: local (the embedded Gemma 3 270M), local:NAME (an embedded model) or "
            "local:/path/model.gguf.",
        ),
    ] = "local",
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.", min=1, max=65535)] = 8000,
    n_ctx: Annotated[
        int | None, typer.Option("--n-ctx", help="Context size in tokens. Default: the backend's for the model.")
    ] = None,
    alias: Annotated[
        str | None,
        typer.Option(
            "--alias", help="The model name clients ask for. Default: the embedded model's name, or the file's stem."
        ),
    ] = None,
) -> None:
    """Serve a local GGUF model over an OpenAI-compatible API (llama-cpp-python's server), on any CPU."""
    if not model.strip().lower().startswith("local"):
        raise ConfigError(f"--model {model!r}: flex serve serves local models (local, local:NAME, local:/path.gguf)")
    if importlib.util.find_spec("uvicorn") is None or importlib.util.find_spec("llama_cpp.server") is None:
        raise ConfigError(f"flex serve needs llama-cpp-python's server. Run: {SERVER_HINT}")
    from flexlearn.models.local import LocalModel
    from flexlearn.models.native_check import model_params
    from flexlearn.models.uri import from_uri

    local = from_uri(model)
    if not isinstance(local, LocalModel):  # pragma: no cover - from_uri builds a LocalModel for local URIs
        raise ConfigError(f"--model {model!r} is not a local model")
    verdict = local.check_native()
    path = local.llama_path()
    name = alias or (local.embedded.name if local.embedded else local.name.removeprefix("local:").rsplit(".", 1)[0])

    import uvicorn
    from llama_cpp.server.app import create_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    settings = ModelSettings(
        model=path,
        model_alias=name,
        n_ctx=n_ctx or local.n_ctx,
        n_threads=local.n_threads,
        n_threads_batch=local.n_threads,
        verbose=False,
    )
    err.print(
        f"serving {name} ({path}) at http://{host}:{port}/v1"
        + ("" if verdict.extra_bufts else "  [without llama.cpp's extra buffer types: they fault on this CPU]"),
        highlight=False,
    )
    # The server loads its model while the app is built: that is when the parameters must apply.
    with model_params(extra_bufts=verdict.extra_bufts):
        server = create_app(server_settings=ServerSettings(host=host, port=port), model_settings=[settings])
    uvicorn.run(server, host=host, port=port, log_level="warning")
