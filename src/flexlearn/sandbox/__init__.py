"""A sandbox for the Python blocks of tool-using actors: a separate, resource-limited process with no network,
no view of the user's files or environment, and nothing left running afterwards. See docs/sandbox.md."""

from flexlearn.sandbox.errors import SandboxRefused
from flexlearn.sandbox.execution import Execution
from flexlearn.sandbox.info import SandboxInfo, sandbox_info
from flexlearn.sandbox.limits import SandboxLimits
from flexlearn.sandbox.runner import SandboxSession, run_python, run_python_sync

__all__ = [
    "Execution",
    "SandboxInfo",
    "SandboxLimits",
    "SandboxRefused",
    "SandboxSession",
    "run_python",
    "run_python_sync",
    "sandbox_info",
]
