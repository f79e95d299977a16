"""The embedding model of dense retrieval, loaded offline from an installed package and verified.

The model is WordLlama `l2_supercat` at 256 dimensions: a table of one 256-float vector per token of the Llama 2
vocabulary (32,000 tokens), trained by its author on token embeddings of Llama 2 70B, Phi-3 medium and other
Llama-2-vocabulary models; a text's embedding is the mean of its tokens' vectors, scaled to unit length. No
attention, no context: it knows that "margin" is near "profit" and "share of sales", not what a sentence means.
It costs 16 MB and embeds thousands of short texts a second on one CPU core.

Where it comes from: the PyPI wheel `wordllama==0.4.0.post1` (`pip install 'flexlearn[dense]'`) ships both files
inside the package, `wordllama/weights/l2_supercat_256.safetensors` and
`wordllama/tokenizers/l2_supercat_tokenizer_config.json`. The package's own loader (`WordLlama.load()`) looks for
the tokenizer under `wordllama/tokenizer/` (singular), misses the shipped file and downloads it from
huggingface.co, so it is not used: this module reads the two files through the package's installed-file record
(`importlib.metadata`, never importing the package's code, as the embedded GGUF models do), checks each file's
sha256 against the digest pinned here and refuses a mismatch, then builds the model from those verified bytes
with `tokenizers` and `safetensors` (the wheel's own dependencies). Nothing is downloaded, ever.

Licence: the wordllama package, its weights included, is released under the MIT License (Copyright (c) 2024
Lee Miller; the text is in docs/licenses/wordllama-LICENSE.txt). The weights were trained from token embeddings
of Llama 2 and other models and the tokenizer is Llama 2's vocabulary; the package declares MIT for all of it,
and Meta's Llama 2 Community License may be read to reach those derived parts: see docs/retrieval.md.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flexlearn.errors import ConfigError

DISTRIBUTION = "wordllama"
VERSION = "0.4.0.post1"
WEIGHTS_FILE = "wordllama/weights/l2_supercat_256.safetensors"
WEIGHTS_SHA256 = "64b47a2dc493cb8e85944076601189739852d7b64e0e1eedcb1937a251cd9fd5"
TOKENIZER_FILE = "wordllama/tokenizers/l2_supercat_tokenizer_config.json"
TOKENIZER_SHA256 = "93248f2a9ec36c7b35f700a033d5f36228aae48db61aee31007fa49062cdeb68"
_TENSOR = "embedding.weight"
# Texts pooled at once: bounds the token-vector gather to a few MB.
_BATCH = 64
LICENSE = "MIT (wordllama 0.4.0.post1, Copyright (c) 2024 Lee Miller)"
INSTALL_HINT = "pip install 'flexlearn[dense]'"
# Names the model and its files: an index built with another model is rebuilt.
MODEL_ID = f"{DISTRIBUTION}-{VERSION}:l2_supercat_256:{WEIGHTS_SHA256[:16]}:{TOKENIZER_SHA256[:16]}"


class EmbedderUnavailableError(ConfigError):
    """The embedding model's package is not installed, is of another version, or its files fail verification."""


@dataclass(frozen=True)
class _Source:
    weights: Path
    tokenizer: Path


def available() -> bool:
    """Whether the package holding the model is installed (its files are verified only at `get_embedder()`)."""
    try:
        importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _source() -> _Source:
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise EmbedderUnavailableError(
            f"dense retrieval needs the {DISTRIBUTION} package, which holds its embedding model: {INSTALL_HINT}"
        ) from None
    if dist.version != VERSION:
        raise EmbedderUnavailableError(
            f"dense retrieval's model is pinned to {DISTRIBUTION}=={VERSION}, but {dist.version} is installed: "
            f"{INSTALL_HINT}"
        )
    return _Source(Path(str(dist.locate_file(WEIGHTS_FILE))), Path(str(dist.locate_file(TOKENIZER_FILE))))


def _verified_bytes(path: Path, sha256: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise EmbedderUnavailableError(f"cannot read the embedding model's file {path} ({e}): {INSTALL_HINT}") from e
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise EmbedderUnavailableError(
            f"the embedding model's file {path} does not match the pinned release (sha256 {digest}, expected "
            f"{sha256}); refusing to use it. Reinstall: pip install --force-reinstall '{DISTRIBUTION}=={VERSION}'"
        )
    return data


class Embedder:
    """Mean-pooled, unit-length WordLlama embeddings. Thread-safe; build it with `get_embedder()`."""

    def __init__(self, source: _Source | None = None) -> None:
        # Imported here: both come with the optional package, and importing this module must not need them.
        from safetensors.numpy import load as load_safetensors
        from tokenizers import Tokenizer

        source = _source() if source is None else source
        weights = _verified_bytes(source.weights, WEIGHTS_SHA256)
        tokenizer = _verified_bytes(source.tokenizer, TOKENIZER_SHA256)
        self.table = np.ascontiguousarray(load_safetensors(weights)[_TENSOR], dtype=np.float32)
        self._tokenizer = Tokenizer.from_str(tokenizer.decode("utf-8"))
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self.model_id = MODEL_ID
        self.dim = int(self.table.shape[1])

    def token_ids(self, text: str) -> list[int]:
        """The vocabulary ids of `text`'s tokens (no special tokens)."""
        # One text at a time: encode_batch would start the tokenizers library's thread pool, which makes it warn
        # (and turn itself off) in every process forked after that.
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One row per text: the mean of its tokens' vectors, scaled to length 1 (float32, `len(texts)` x `dim`).
        A text with no tokens gets a row of zeros, which is similar to nothing."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), _BATCH):
            self._pool([self.token_ids(t) for t in texts[start : start + _BATCH]], out[start : start + _BATCH])
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out

    def _pool(self, ids: list[list[int]], out: np.ndarray) -> None:
        lengths = np.fromiter((len(i) for i in ids), dtype=np.int64, count=len(ids))
        filled = np.flatnonzero(lengths)
        if not filled.size:
            return
        flat = np.fromiter((t for i in ids for t in i), dtype=np.int64, count=int(lengths.sum()))
        np.clip(flat, 0, self.table.shape[0] - 1, out=flat)
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))[filled]
        out[filled] = np.add.reduceat(self.table[flat], starts, axis=0) / lengths[filled, None]


_EMBEDDER: Embedder | None = None
_LOCK = threading.Lock()


def get_embedder() -> Embedder:
    """The process's embedder, loaded and verified on first use (about 0.1 s). EmbedderUnavailableError (a
    ConfigError) when the package is missing, of another version or its files do not match the pinned digests."""
    global _EMBEDDER
    with _LOCK:
        if _EMBEDDER is None:
            _EMBEDDER = Embedder()
        return _EMBEDDER
