"""A scripted model that plays all four FLEX roles deterministically, for end-to-end tests over real HTTP.

Problems are arithmetic questions ("What is the sum of 12 and 30?"). The actor answers wrong (off by one) unless
its prompt carries experience from the library or feedback from an earlier round, so a test can see that
feedback and retrieved experience reach the prompt. Roles are told apart by the system message, exactly as a
real server would see them.
"""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any

from tests.support.fake_openai import FakeRequest

KINDS = {"sum": lambda a, b: a + b, "product": lambda a, b: a * b, "difference": lambda a, b: a - b}
# The text of a deliberately wrong lesson: an actor shown it answers one too high.
HARMFUL = "always add one to the result"
_QUESTION = re.compile(r"What is the (sum|product|difference) of (\d+) and (\d+)\?")


def parse(text: str) -> tuple[str, int, int] | None:
    match = _QUESTION.search(text)
    if match is None:
        return None
    return match.group(1), int(match.group(2)), int(match.group(3))


class ScriptedFlex:
    """Callable handler for FakeOpenAI. `delay` slows every reply (to kill a run midway)."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.lock = threading.Lock()
        self.roles: list[str] = []

    def __call__(self, request: FakeRequest) -> str:
        if self.delay:
            time.sleep(self.delay)
        messages: list[dict[str, Any]] = request.json.get("messages", [])
        system = messages[0]["content"] if messages else ""
        user = "\n".join(m["content"] for m in messages[1:])
        for marker, role in (
            ("careful problem solver", "actor"),
            ("You are a critic", "critic"),
            ("You are a verifier", "judge"),
            ("You distil experience", "distiller"),
            ("You maintain an experience library", "updater"),
        ):
            if marker in system:
                with self.lock:
                    self.roles.append(role)
                return getattr(self, role)(user)
        raise ValueError(f"unrecognised request: {system[:80]!r}")

    def actor(self, user: str) -> str:
        problem = parse(user.split("Problem:")[-1])
        if problem is None:
            return "I cannot tell. Final answer: \\boxed{0}"
        kind, a, b = problem
        right = KINDS[kind](a, b)
        if HARMFUL in user:  # a lesson that is wrong, followed: the gate's tests import it
            return f"The lessons say to add one: {right + 1}. Final answer: \\boxed{{{right + 1}}}"
        if "<experience " in user or "Your earlier attempts were wrong" in user:
            work = f"Using the feedback and experience, the {kind} of {a} and {b} is {right}."
            return f"{work} Final answer: \\boxed{{{right}}}"
        return f"A quick guess: the {kind} is {right + 1}. Final answer: \\boxed{{{right + 1}}}"

    def critic(self, user: str) -> str:
        return json.dumps({"diagnosis": "The result is off by one.", "next_step": "Recompute it digit by digit."})

    def judge(self, user: str) -> str:
        correct = "Using the feedback" in user
        return json.dumps(
            {
                "correct": correct,
                "diagnosis": "" if correct else "A guess, not a computation.",
                "next_step": "" if correct else "Compute it step by step.",
            }
        )

    def distiller(self, user: str) -> str:
        problem = parse(user)
        if problem is None:
            # A question of the shipped demo slices (word facts, GSM8k): nothing scripted to learn from it.
            return json.dumps({"category": "", "experiences": []})
        kind, a, b = problem
        out = []
        if HARMFUL in user:  # an outcome that teaches a wrong rule: the gate's tests record one
            out.append(
                {
                    "zone": "golden",
                    "level": "principle",
                    "title": "arithmetic",
                    "content": f"For a sum, product or difference, {HARMFUL}.",
                }
            )
        if "CORRECT" in user:
            out += [
                {
                    "zone": "golden",
                    "level": "principle",
                    "title": "arithmetic",
                    "content": f"Compute a {kind} digit by digit and check it before answering.",
                },
                {
                    "zone": "golden",
                    "level": "pattern",
                    "title": f"{kind} of two numbers",
                    "content": f"For the {kind} of two numbers, write both one under the other and combine them.",
                },
                {
                    "zone": "golden",
                    "level": "case",
                    "title": f"{kind} of {a} and {b}",
                    "content": f"The {kind} of {a} and {b} came out right once it was computed, not guessed.",
                },
            ]
        if "WRONG" in user:
            out += [
                {
                    "zone": "warning",
                    "level": "principle",
                    "title": "arithmetic",
                    "content": f"Never guess a {kind}: a quick guess is often off by one.",
                },
                {
                    "zone": "warning",
                    "level": "pattern",
                    "title": f"{kind} of two numbers",
                    "content": f"Guessing the {kind} of two numbers instead of computing it gives an off-by-one.",
                },
                {
                    "zone": "warning",
                    "level": "case",
                    "title": f"{kind} of {a} and {b}",
                    "content": f"A guessed {kind} of {a} and {b} was off by one.",
                },
            ]
        return json.dumps({"experiences": out})

    def updater(self, user: str) -> str:
        header = re.search(r"Candidate \((\w+) (\w+),", user)
        assert header is not None, user
        zone, level = header.groups()
        same = re.search(rf"^\[([\w-]+)\] \({zone} {level}, ([^)]*)\)", user, flags=re.MULTILINE)
        if level == "pattern" and same is not None:
            title = same.group(2)
            return json.dumps(
                {
                    "action": "merge",
                    "target": same.group(1),
                    "merged_content": f"{title}: write both numbers, combine them, check the result.",
                    "reason": "same procedure as an existing pattern",
                }
            )
        if level == "principle" and same is not None:
            return json.dumps(
                {
                    "action": "discard",
                    "target": "",
                    "merged_content": "",
                    "reason": f"already covered by {same.group(1)}",
                }
            )
        return json.dumps({"action": "add", "target": "", "merged_content": "", "reason": "a new lesson"})
