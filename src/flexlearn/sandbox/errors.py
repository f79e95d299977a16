"""Errors of the sandbox, inside flexlearn's one hierarchy."""

from __future__ import annotations

from flexlearn.errors import FlexError


class SandboxRefused(FlexError):
    """strict=True was asked for and the machine cannot give the isolation it requires (e.g. no network
    namespace). The message says what was missing; docs/sandbox.md says how to check."""
