"""Tasks: how problems are loaded, shown to the actor and scored. See `base.Task` for the interface.

Built-in tasks (math, gsm8k, exact, formula, aime, math500, retro, protein) are imported only when `get_task` asks
for them.
"""

from flexlearn.tasks.base import MetricTask, Problem, Score, Task
from flexlearn.tasks.loader import load_problems
from flexlearn.tasks.registry import available_tasks, get_task

__all__ = ["MetricTask", "Problem", "Score", "Task", "available_tasks", "get_task", "load_problems"]
