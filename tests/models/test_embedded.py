"""The embedded-model catalog: parts found through package metadata, assembled, verified, refused on mismatch."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from flexlearn.errors import ConfigError
from flexlearn.models.base import PromptKind
from flexlearn.models.embedded import EMBEDDED, EmbeddedModel, assemble, lookup

PARTS = [b"GGUF" + b"a" * 1000, b"b" * 777, b"c" * 5]


def _install_fake_parts(site: Path, parts: list[bytes], version: str = "1.0") -> None:
    """Write minimal installed distributions `fakepartN` whose only file is fakepartN/data/partNN.bin."""
    for i, data in enumerate(parts, start=1):
        name = f"fakepart{i}"
        (site / name / "data").mkdir(parents=True)
        (site / name / "data" / f"part{i:02d}.bin").write_bytes(data)
        info = site / f"{name}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        (info / "RECORD").write_text(f"{name}/data/part{i:02d}.bin,,\n{name}-{version}.dist-info/METADATA,,\n")


def _model(parts: list[bytes], *, sha256: str | None = None, version: str = "1.0") -> EmbeddedModel:
    whole = b"".join(parts)
    return EmbeddedModel(
        name="fake-model",
        file="fake.gguf",
        prompt_kind=PromptKind.CHAT,
        extra="qwen",
        parts=tuple((f"fakepart{i}", version) for i in range(1, len(parts) + 1)),
        size=len(whole),
        sha256=sha256 or hashlib.sha256(whole).hexdigest(),
    )


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.setattr(sys, "path", [str(site), *sys.path])
    return site


def test_parts_are_joined_in_order_and_verified_once(site: Path, tmp_path: Path) -> None:
    _install_fake_parts(site, PARTS)
    out = assemble(_model(PARTS), tmp_path / "cache")
    assert out.read_bytes() == b"".join(PARTS)
    # A second call trusts the sidecar (same size and mtime) instead of hashing again.
    assert assemble(_model(PARTS), tmp_path / "cache") == out


def test_a_file_changed_after_verification_is_assembled_again(site: Path, tmp_path: Path) -> None:
    _install_fake_parts(site, PARTS)
    out = assemble(_model(PARTS), tmp_path / "cache")
    out.write_bytes(b"tampered")
    assert assemble(_model(PARTS), tmp_path / "cache").read_bytes() == b"".join(PARTS)


def test_a_digest_mismatch_is_refused_and_leaves_nothing(site: Path, tmp_path: Path) -> None:
    _install_fake_parts(site, PARTS)
    with pytest.raises(ConfigError, match="does not match the pinned release"):
        assemble(_model(PARTS, sha256="0" * 64), tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_another_version_of_a_part_is_refused(site: Path, tmp_path: Path) -> None:
    _install_fake_parts(site, PARTS, version="2.0")
    with pytest.raises(ConfigError, match=r"only version 1\.0 is trusted"):
        assemble(_model(PARTS), tmp_path / "cache")


def test_a_missing_part_names_the_install_command(site: Path, tmp_path: Path) -> None:
    _install_fake_parts(site, PARTS[:2])
    with pytest.raises(ConfigError, match=r"fakepart3 is not installed.*flexlearn\[qwen\]"):
        assemble(_model(PARTS), tmp_path / "cache")


def test_catalog_names_and_pins() -> None:
    assert lookup("Qwen2.5-Coder-1.5B") is EMBEDDED["qwen2.5-coder-1.5b"]
    qwen = EMBEDDED["qwen2.5-coder-1.5b"]
    assert qwen.prompt_kind == PromptKind.CHAT and len(qwen.parts) == 22
    assert all(version == "0.2.0" for _, version in qwen.parts)
    assert EMBEDDED["qwen2.5-coder-0.5b"].size == 491_400_064
    assert lookup("nonexistent") is None


def _installed(model: EmbeddedModel) -> bool:
    import importlib.metadata
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None:
        return False
    try:
        for name, _ in model.parts:
            importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(not _installed(EMBEDDED["qwen2.5-coder-0.5b"]), reason="needs flexlearn[qwen]")
async def test_the_real_qwen_05b_assembles_verifies_and_chats() -> None:
    from flexlearn.models.base import GenerationOptions, Message, Prompt
    from flexlearn.models.uri import from_uri

    model = from_uri("local:qwen2.5-coder-0.5b")
    assert model.name == "local:qwen2.5-coder-0.5b" and model.prompt_kind == PromptKind.CHAT
    prompt = Prompt(messages=[Message("user", "What is 2 + 3? Reply with the number only.")])
    reply = await model.generate(prompt, role="actor", options=GenerationOptions(max_tokens=8))
    assert "5" in reply.text and reply.usage.completion_tokens > 0


def test_instruction_models_are_told_apart_by_uri() -> None:
    from flexlearn.models.embedded import is_embedded_instruct

    assert is_embedded_instruct("local:qwen2.5-coder-1.5b") and is_embedded_instruct("local:Qwen2.5-Coder-0.5B")
    assert not any(is_embedded_instruct(u) for u in ("local", "local:gemma3-270m", "local:/x.gguf", "openai:m", None))
