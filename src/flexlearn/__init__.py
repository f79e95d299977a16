"""flexlearn: Forward Learning from EXperience (FLEX, arXiv 2511.06449).

An agent gets better with experience without touching model weights: it explores training problems with an
actor and a critic, distils what worked and what failed into an experience library, and retrieves from that
library when it meets a new problem.

    import flexlearn

    model = flexlearn.connect("openai:gpt-4o-mini")
    with flexlearn.Agents(actor=model) as agents, flexlearn.Library.open("gsm8k.flexlib") as lib:
        flexlearn.learn("train.jsonl", task="gsm8k", agents=agents, library=lib)
        results = flexlearn.evaluate("test.jsonl", task="gsm8k", agents=agents, library=lib)

The names in `__all__` are the public API (docs/api.md), with two public subpackages: `flexlearn.tasks` (the
`Task` protocol, `Problem`, `get_task`) and `flexlearn.models` (the `ChatModel` seam, for a model of your own),
and two public modules: `flexlearn.settings` (`LearnSettings`, `EvalSettings`, `SolveSettings`: every setting of
`learn`, `evaluate` and `solve` with its default, the same as the CLI's options) and `flexlearn.engine` (`Engine`:
a task, agents, library and settings built once, on which these functions, the CLI and the demo all run).
Every other module is internal and may change between releases.
"""

# Set before the imports below: modules they load read it.
__version__ = "0.1.0"

from flexlearn._api import (
    Guidance,
    aevaluate,
    alearn,
    arecord,
    asolve,
    connect,
    evaluate,
    guidance,
    learn,
    record,
    solve,
)
from flexlearn.demo import demo_data
from flexlearn.errors import FlexError
from flexlearn.experience import Experience, Level, Zone
from flexlearn.library.store import Library
from flexlearn.loop.agents import Agents
from flexlearn.loop.evaluate import Mode

__all__ = [
    "Agents",
    "Experience",
    "FlexError",
    "Guidance",
    "Level",
    "Library",
    "Mode",
    "Zone",
    "__version__",
    "aevaluate",
    "alearn",
    "arecord",
    "asolve",
    "connect",
    "demo_data",
    "evaluate",
    "guidance",
    "learn",
    "record",
    "solve",
]
