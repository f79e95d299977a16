"""explore / learn / evaluate with in-process models: budgets, early stop, failure handling, resume."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from flexlearn.agents.actor import worked_shots
from flexlearn.errors import ConfigError, FlexError, ModelError
from flexlearn.experience import Action, Experience, Level, Zone
from flexlearn.library.store import Library
from flexlearn.loop.agents import Agents
from flexlearn.loop.evaluate import EvalConfig, Mode, evaluate, parse_modes
from flexlearn.loop.explore import ExploreConfig, exploration_defaults, explore
from flexlearn.loop.learn import LearnConfig, learn
from flexlearn.loop.stats import wilson
from flexlearn.models.base import GenerationOptions, PromptKind
from flexlearn.models.function import FunctionModel
from flexlearn.tasks import Problem, get_task

TASK = get_task("exact")
PROBLEMS = [Problem(id=f"p{i}", question=f"Capital of country {i}?", answer=f"city{i}") for i in range(4)]


def never_right(prompt, role, schema):  # type: ignore[no-untyped-def]
    if role == "actor":
        return "Final answer: nowhere"
    if role == "critic":
        return json.dumps({"diagnosis": "wrong city", "next_step": "think again"})
    if role == "distiller":
        return json.dumps(
            {
                "experiences": [
                    {
                        "zone": "warning",
                        "level": "principle",
                        "title": "capitals",
                        "content": "Do not answer nowhere for a capital city question.",
                    }
                ]
            }
        )
    return json.dumps({"action": "add", "reason": "new"})


async def test_a_critic_whose_replies_are_unusable_leaves_its_error_in_the_step_record(tmp_path: Path) -> None:
    def broken_critic(prompt, role, schema):  # type: ignore[no-untyped-def]
        return "this is not JSON at all" if role == "critic" else never_right(prompt, role, schema)

    model = FunctionModel(broken_critic)
    traj = await explore(PROBLEMS[0], task=TASK, actor=model, critic=model, config=ExploreConfig(rollouts=1, rounds=2))
    first = traj.steps[0]
    assert first.feedback and first.critic_error  # the generic stand-in, and why
    assert traj.steps[1].critic_error == ""  # no critique after the last round
    with Library.open(tmp_path / "lib.flexlib") as lib:
        config = LearnConfig(explore=ExploreConfig(rollouts=1, rounds=2), concurrency=1)
        summary = await learn(PROBLEMS[:1], task=TASK, agents=Agents.single(model), library=lib, config=config)
        stored = lib.trajectory(summary.run_id, PROBLEMS[0].id)
        assert stored["steps"][0]["critic_error"] == first.critic_error


async def test_explore_runs_rollouts_times_rounds_and_stops_on_success() -> None:
    model = FunctionModel(never_right)
    traj = await explore(PROBLEMS[0], task=TASK, actor=model, critic=model, config=ExploreConfig(rollouts=2, rounds=3))
    assert len(traj.steps) == 6 and not traj.solved
    # the critic is not asked after the last round of a rollout
    assert [c.role for c in model.calls].count("critic") == 4
    assert all(s.feedback for s in traj.steps if s.round < 2)

    calls = {"n": 0}

    def second_time(prompt, role, schema):  # type: ignore[no-untyped-def]
        if role == "actor":
            calls["n"] += 1
            return "Final answer: city0" if calls["n"] == 2 else "Final answer: x"
        return never_right(prompt, role, schema)

    model = FunctionModel(second_time)
    traj = await explore(PROBLEMS[0], task=TASK, actor=model, critic=model, config=ExploreConfig(rollouts=3, rounds=5))
    assert traj.solved and len(traj.steps) == 2
    # the retry saw the critic's feedback
    assert "think again" in model.calls[-1].prompt.messages[1].content


async def test_learn_survives_nonsense_from_every_role(tmp_path: Path) -> None:
    model = FunctionModel(lambda p, r, s: "%%% <garbage> {{{")
    with Library.open(tmp_path / "l.flexlib") as lib:
        summary = await learn(
            PROBLEMS,
            task=TASK,
            agents=Agents.single(model),
            library=lib,
            config=LearnConfig(explore=ExploreConfig(rollouts=1, rounds=2)),
        )
        assert summary.unsolved == len(PROBLEMS) and summary.failed == 0
        # The model's prose is unusable, but each failed problem still leaves its grounded warning case.
        assert lib.count() == len(PROBLEMS)
        assert {(e.zone, e.level) for e in lib.list()} == {(Zone.WARNING, Level.CASE)}
        status = lib.problem_status(summary.run_id)
        assert set(status.values()) == {"unsolved"}
        assert lib.trajectory(summary.run_id, "p0")["distill_error"]


async def test_learn_stops_after_consecutive_model_failures_and_resumes(tmp_path: Path) -> None:
    down = {"on": True}

    def flaky(prompt, role, schema):  # type: ignore[no-untyped-def]
        if down["on"]:
            raise ModelError("connection refused")
        return never_right(prompt, role, schema)

    model = FunctionModel(flaky)
    config = LearnConfig(explore=ExploreConfig(rollouts=1, rounds=1), max_consecutive_failures=2, concurrency=1)
    with Library.open(tmp_path / "l.flexlib") as lib:
        with pytest.raises(ModelError, match="in a row"):
            await learn(PROBLEMS, task=TASK, agents=Agents.single(model), library=lib, config=config)
        down["on"] = False
        summary = await learn(PROBLEMS, task=TASK, agents=Agents.single(model), library=lib, config=config, resume=True)
        assert summary.resumed and summary.unsolved == len(PROBLEMS) and summary.failed == 0
        # one warning principle (later copies are exact duplicates, discarded) and a warning case per problem
        assert lib.count(level=Level.PRINCIPLE) == 1 and lib.count(level=Level.CASE) == len(PROBLEMS)
        with pytest.raises(FlexError, match="nothing to resume"):
            await learn(PROBLEMS[:2], task=TASK, agents=Agents.single(model), library=lib, config=config, resume=True)


async def test_a_short_run_in_which_every_problem_failed_at_the_model_is_an_error(tmp_path: Path) -> None:
    def down(prompt, role, schema):  # type: ignore[no-untyped-def]
        raise ModelError("connection refused")

    config = LearnConfig(explore=ExploreConfig(rollouts=1, rounds=1), max_consecutive_failures=5, concurrency=1)
    with Library.open(tmp_path / "l.flexlib") as lib:
        with pytest.raises(ModelError, match=r"all 3 problems failed at the model.*connection refused"):
            await learn(PROBLEMS[:3], task=TASK, agents=Agents.single(FunctionModel(down)), library=lib, config=config)
        assert lib.count() == 0
        assert lib.resumable_run("learn", task=TASK.name, problem_ids=[p.id for p in PROBLEMS[:3]])


async def test_resume_without_a_run_is_an_error(tmp_path: Path) -> None:
    with Library.open(tmp_path / "l.flexlib") as lib, pytest.raises(FlexError, match="nothing to resume"):
        await learn(PROBLEMS, task=TASK, agents=Agents.single(FunctionModel(never_right)), library=lib, resume=True)


async def test_evaluate_records_items_and_checks_inputs(tmp_path: Path) -> None:
    def right(prompt, role, schema):  # type: ignore[no-untyped-def]
        text = prompt.messages[1].content
        q = text.split("Problem:")[-1]
        n = next(ch for ch in q if ch.isdigit())
        return f"Final answer: city{n}"

    agents = Agents.single(FunctionModel(right))
    results = await evaluate(
        PROBLEMS, task=TASK, modes=[Mode.VANILLA, Mode.ICL], agents=agents, train=PROBLEMS, config=EvalConfig(icl_k=2)
    )
    assert [r.accuracy for r in results] == [1.0, 1.0]
    icl = results[1].items[0]
    assert icl.prompt.count("Example problem") == 2 and icl.extracted == "city0"
    with pytest.raises(ConfigError, match="--library"):
        await evaluate(PROBLEMS, task=TASK, modes=[Mode.FLEX], agents=agents)
    with pytest.raises(ConfigError, match="--train"):
        await evaluate(PROBLEMS, task=TASK, modes=[Mode.ICL], agents=agents)

    def broken(prompt, role, schema):  # type: ignore[no-untyped-def]
        raise ModelError("gave up after 6 attempts")

    # An outage is an error, not a table of zeros (tests/loop/test_outage.py); turned off, items record it.
    allow = EvalConfig(abort_after_errors=0, max_error_fraction=1.0)
    [r] = await evaluate(
        PROBLEMS, task=TASK, modes=[Mode.VANILLA], agents=Agents.single(FunctionModel(broken)), config=allow
    )
    assert r.errors == len(PROBLEMS) and r.accuracy == 0.0


def test_worked_shots_never_include_the_problem_itself() -> None:
    shots = worked_shots(TASK, PROBLEMS, PROBLEMS[0], k=10, seed=1)
    assert len(shots) == 3 and all("country 0" not in s.question for s in shots)
    assert shots == worked_shots(TASK, PROBLEMS, PROBLEMS[0], k=10, seed=1)


def test_parse_modes_and_wilson() -> None:
    assert parse_modes("vanilla, FLEX") == [Mode.VANILLA, Mode.FLEX]
    with pytest.raises(ConfigError, match="unknown mode"):
        parse_modes("vanilla,zero")
    low, high = wilson(0, 10)
    assert low == 0.0 and 0.25 < high < 0.35
    low, high = wilson(5, 10)
    assert 0.2 < low < 0.25 and 0.75 < high < 0.8


async def test_explore_shots_come_from_other_training_problems_and_vary_by_rollout() -> None:
    model = FunctionModel(never_right)
    config = ExploreConfig(rollouts=2, rounds=1, shots=2)
    await explore(PROBLEMS[0], task=TASK, actor=model, critic=model, config=config, pool=PROBLEMS)
    prompts = [c.prompt.messages[1].content for c in model.calls if c.role == "actor"]
    assert len(prompts) == 2
    for text in prompts:
        assert text.count("Example problem") == 2 and "country 0?" not in text.split("Problem:")[0]
    await explore(PROBLEMS[0], task=TASK, actor=model, critic=model, config=ExploreConfig(rollouts=1, rounds=1))
    assert "Example problem" not in model.calls[-1].prompt.messages[1].content


async def test_later_rollouts_of_a_greedy_actor_sample_with_a_seed_of_their_own() -> None:
    # At temperature 0 a deterministic backend would repeat rollout 0 word for word, at full cost.
    async def actor_options(config: ExploreConfig) -> list[tuple[float | None, int | None]]:
        model = FunctionModel(never_right)
        await explore(PROBLEMS[0], task=TASK, actor=model, critic=model, config=config)
        return [(c.options.temperature, c.options.seed) for c in model.calls if c.role == "actor" and c.options]

    greedy = await actor_options(ExploreConfig(rollouts=3, rounds=2))
    assert [t for t, _ in greedy] == [None, None, 0.7, 0.7, 0.7, 0.7]
    seeds = [s for _, s in greedy]
    assert seeds[0] is None and seeds[2] == seeds[3] != seeds[4] == seeds[5]  # one seed per rollout
    assert await actor_options(ExploreConfig(rollouts=3, rounds=2)) == greedy  # a rerun explores the same way
    # A sampling actor, or rollouts that already differ by their worked examples, are left as configured.
    sampling = ExploreConfig(rollouts=2, rounds=1, actor=GenerationOptions(temperature=0.3))
    assert await actor_options(sampling) == [(0.3, None), (0.3, None)]
    assert await actor_options(ExploreConfig(rollouts=2, rounds=1, shots=1)) == [(None, None), (None, None)]


def test_exploration_defaults_follow_the_model() -> None:
    chat = exploration_defaults(FunctionModel(never_right, name="openai:gpt"))
    assert (chat.rollouts, chat.rounds, chat.shots) == (3, 5, 0)
    local = exploration_defaults(FunctionModel(never_right, name="local:tiny.gguf", prompt_kind=PromptKind.COMPLETION))
    assert (local.rollouts, local.rounds, local.shots) == (3, 2, 3)
    # An embedded instruction model explores once, as its measured library was learned; any other local chat
    # model (a file of the user's) keeps the paper's three rollouts.
    instruct = exploration_defaults(FunctionModel(never_right, name="local:qwen2.5-coder-1.5b"))
    assert (instruct.rollouts, instruct.rounds, instruct.shots) == (1, 2, 0)
    other = exploration_defaults(FunctionModel(never_right, name="local:/models/mine.gguf"))
    assert (other.rollouts, other.rounds, other.shots) == (3, 2, 0)


async def test_repeats_are_averaged_with_a_bootstrap_interval() -> None:
    def coin(prompt, role, schema):  # type: ignore[no-untyped-def]
        # Right on even seeds only, so every problem scores exactly half over 2 samples.
        seed = coin.options.seed if coin.options else 0  # type: ignore[attr-defined]
        return "Final answer: city0" if seed % 2 == 0 else "Final answer: x"

    class Seeded(FunctionModel):
        async def generate(self, prompt, *, role="actor", schema=None, options=None):  # type: ignore[no-untyped-def]
            coin.options = options  # type: ignore[attr-defined]
            return await super().generate(prompt, role=role, schema=schema, options=options)

    one = [Problem(id=f"q{i}", question="Capital of country 0?", answer="city0") for i in range(6)]
    [r] = await evaluate(
        one, task=TASK, modes=[Mode.VANILLA], agents=Agents.single(Seeded(coin)), config=EvalConfig(repeats=2)
    )
    assert (r.n, r.samples, r.repeats, r.correct) == (6, 12, 2, 6)
    assert r.accuracy == 0.5
    assert r.ci_low == r.ci_high == 0.5  # every problem is exactly 1 of 2: resampling problems cannot move it
    assert sorted({i.repeat for i in r.items}) == [0, 1]


def test_bootstrap_interval_covers_the_mean_and_narrows_with_n() -> None:
    from flexlearn.loop.stats import bootstrap

    def mean(gs):  # type: ignore[no-untyped-def]
        return sum(gs) / len(gs)

    small = bootstrap([0, 1] * 10, mean, seed=1)
    large = bootstrap([0, 1] * 500, mean, seed=1)
    assert small[0] < 0.5 < small[1] and large[0] < 0.5 < large[1]
    assert (large[1] - large[0]) < (small[1] - small[0]) / 3
    assert bootstrap([], mean) == (0.0, 0.0)


@pytest.mark.parametrize("role", ["critic", "distiller", "updater"])
async def test_a_model_error_in_any_role_fails_the_problem_and_resume_retries_it(tmp_path: Path, role: str) -> None:
    down = {"on": True}

    lessons = iter(range(1000))

    def broken_role(prompt, r, schema):  # type: ignore[no-untyped-def]
        if r == role and down["on"]:
            raise ModelError("HTTP 401: invalid key")
        if r == "distiller":
            # A new principle each time: similar to the earlier ones (so the updater is asked), never a copy.
            lesson = f"Lesson {next(lessons)} on capital questions: do not answer nowhere."
            principle = {"zone": "warning", "level": "principle", "title": "capitals", "content": lesson}
            return json.dumps({"category": "capitals", "experiences": [principle]})
        return never_right(prompt, r, schema)

    model = FunctionModel(broken_role)
    config = LearnConfig(explore=ExploreConfig(rollouts=1, rounds=2), concurrency=1, max_consecutive_failures=99)
    with Library.open(tmp_path / "l.flexlib") as lib:
        if role == "updater":
            # The updater is only asked when a candidate has neighbours: seed one.
            seed = [Problem(id="seed", question="Capital of country 9?", answer="city9")]
            down["on"] = False
            await learn(seed, task=TASK, agents=Agents.single(model), library=lib)
            down["on"] = True
        before = lib.count()
        # Every problem failed: the run is an error however large the streak allowed, and stays resumable.
        with pytest.raises(ModelError, match=f"all {len(PROBLEMS)} problems failed at the model"):
            await learn(PROBLEMS, task=TASK, agents=Agents.single(model), library=lib, config=config)
        run_id = lib.latest_run("learn")
        assert run_id is not None
        assert lib.count() == before  # nothing from a failed problem was written
        assert set(lib.problem_status(run_id).values()) == {"failed"}
        down["on"] = False
        again = await learn(PROBLEMS, task=TASK, agents=Agents.single(model), library=lib, config=config, resume=True)
        assert again.run_id == run_id and again.failed == 0 and again.unsolved == len(PROBLEMS)


async def test_the_updater_compares_lessons_of_a_kind_the_data_names_with_that_kind_alone(tmp_path: Path) -> None:
    kinds = ["Current Ratio", "Working Capital", "Current Ratio"]
    problems = [
        Problem(id=f"k{i}", question=f"Capital of country {i}?", answer=f"city{i}", meta={"category": kind})
        for i, kind in enumerate(kinds)
    ]
    seen: list[str] = []

    def model(prompt, role, schema):  # type: ignore[no-untyped-def]
        if role == "updater":
            seen.append(prompt.messages[-1].content)
        if role == "distiller":
            n = len([c for c in calls if c == "distiller"])
            calls.append(role)
            lesson = f"Lesson {n}: never answer nowhere for a capital."
            principle = {"zone": "warning", "level": "principle", "title": "capitals", "content": lesson}
            return json.dumps({"experiences": [principle]})
        return never_right(prompt, role, schema)

    calls: list[str] = []
    with Library.open(tmp_path / "lib.flexlib") as lib:
        config = LearnConfig(explore=ExploreConfig(rollouts=1, rounds=1), concurrency=1, problems_in_flight=1)
        await learn(problems, task=TASK, agents=Agents.single(FunctionModel(model)), library=lib, config=config)
        # The second problem's kind is new, so its lesson is added without asking; the third's kind is the
        # first's, and the updater is asked about it against the first's entry alone.
        assert len(seen) == 1 and "Lesson 0" in seen[0] and "Lesson 1" not in seen[0]
        principles = lib.list(level=Level.PRINCIPLE)
        assert sorted(e.title for e in principles) == ["Current Ratio", "Current Ratio", "Working Capital"]


async def test_a_merge_that_would_copy_another_entry_is_a_discard_linked_to_it(tmp_path: Path) -> None:
    lessons = iter(["Alpha lesson about capitals.", "Beta lesson about capitals.", "Gamma lesson about capitals."])

    def model(prompt, role, schema):  # type: ignore[no-untyped-def]
        if role == "actor":
            return "Final answer: nowhere"
        if role == "distiller":
            principle = {"zone": "warning", "level": "principle", "title": "capitals", "content": next(lessons)}
            return json.dumps({"category": "capitals", "experiences": [principle]})
        if role == "updater":
            text = prompt.messages[-1].content
            if "Gamma" not in text.split("Most similar")[0]:
                return json.dumps({"action": "add", "reason": "new"})
            beta = re.search(r"\[([\w-]+)\][^\n]*Beta", text)
            if beta is None:  # decided before beta was written; the writer's re-check asks again
                return json.dumps({"action": "add", "reason": "new"})
            # The updater "merges" into beta by writing alpha's text: beta would become a copy of alpha.
            return json.dumps(
                {
                    "action": "merge",
                    "target": beta.group(1),
                    "merged_content": "Alpha lesson about capitals.",
                    "reason": "same idea",
                }
            )
        return never_right(prompt, role, schema)

    config = LearnConfig(explore=ExploreConfig(rollouts=1, rounds=1), concurrency=1)
    with Library.open(tmp_path / "l.flexlib") as lib:
        await learn(PROBLEMS[:3], task=TASK, agents=Agents.single(FunctionModel(model)), library=lib, config=config)
        principles = [e.content for e in lib.list(level=Level.PRINCIPLE)]
        assert sorted(principles) == ["Alpha lesson about capitals.", "Beta lesson about capitals."]
        assert any(e.action == Action.DISCARD and "would repeat" in e.reason for e in lib.events())


async def test_learn_titles_lessons_with_the_category_the_data_gives(tmp_path: Path) -> None:
    labelled = [Problem(id="c0", question="Capital of country 0?", answer="city0", meta={"category": "capital city"})]
    with Library.open(tmp_path / "l.flexlib") as lib:
        await learn(
            labelled,
            task=TASK,
            agents=Agents.single(FunctionModel(never_right)),
            library=lib,
            config=LearnConfig(explore=ExploreConfig(rollouts=1, rounds=1)),
        )
        # The distiller wrote "capitals" and the task is "exact": the data's own label wins over both.
        assert {e.title for e in lib.list()} == {"capital city"}
        # The run record keeps what the distiller wrote and was not kept, with the reason (here: nothing).
        assert lib.trajectory(lib.latest_run("learn"), "c0")["distill_dropped"] == []


async def test_flex_review_gives_the_lessons_to_the_critic_and_retries_on_its_feedback(tmp_path: Path) -> None:
    lib = Library.open(tmp_path / "lib.flexlib")
    lib.add(
        Experience(Zone.WARNING, Level.PRINCIPLE, "capitals", "Never answer nowhere for the capital of a country."),
        reason="test",
    )
    lib.add(Experience(Zone.GOLDEN, Level.CASE, "capital of country 0", "Capital of country 0: city0."), reason="test")

    def fn(prompt, role, schema):  # type: ignore[no-untyped-def]
        user = prompt.messages[1].content
        if role == "actor":
            return "Final answer: city0" if "Feedback:" in user else "Final answer: nowhere"
        assert role == "judge"
        wrong = "Final answer: nowhere" in user
        return json.dumps({"correct": not wrong, "diagnosis": "answered nowhere", "next_step": "name a city"})

    model = FunctionModel(fn)
    config = EvalConfig(guide_at="review", agent_rounds=3)
    [r] = await evaluate(
        PROBLEMS[:1], task=TASK, modes=[Mode.FLEX], agents=Agents.single(model), library=lib, config=config
    )
    item = r.items[0]
    assert item.correct and item.calls == 4 and item.rounds == 2
    actor_prompts = [c.prompt.messages[1].content for c in model.calls if c.role == "actor"]
    judge_prompts = [c.prompt.messages[1].content for c in model.calls if c.role == "judge"]
    # The actor sees the worked case, never the lessons; the critic checks against the lessons, never the case.
    assert all("Capital of country 0: city0." in p and "capital of a country" not in p for p in actor_prompts)
    assert all("- Mistake seen before: Never answer nowhere" in p for p in judge_prompts)
    assert not any("Capital of country 0: city0" in p for p in judge_prompts)
    assert len(item.retrieved) == 2
    # Without lessons the critic's prompt is the agent's own.
    [agent] = await evaluate(PROBLEMS[:1], task=TASK, modes=[Mode.AGENT], agents=Agents.single(model), config=config)
    assert agent.items[0].retrieved == []
    assert "Lessons from earlier" not in model.calls[-1].prompt.messages[1].content
    with pytest.raises(ConfigError, match="guide_at"):
        EvalConfig(guide_at="system")


async def test_flex_review_shows_the_actor_the_failed_cases_of_its_own_kind(tmp_path: Path) -> None:
    lib = Library.open(tmp_path / "lib.flexlib")
    failed = "Q: Capital of country 7?\nWrong: nowhere\nRight answer: city7"
    lib.add(Experience(Zone.WARNING, Level.CASE, "capitals", "Failed: country 7.", examples=[failed]), reason="t")
    lib.add(Experience(Zone.WARNING, Level.CASE, "rivers", "Failed: country river.", examples=[]), reason="t")
    problem = Problem(id="p0", question="Capital of country 0?", answer="city0", meta={"category": "Capitals"})
    model = FunctionModel(
        lambda prompt, role, schema: "Final answer: city0" if role == "actor" else json.dumps({"correct": True})
    )
    config = EvalConfig(guide_at="review", agent_rounds=2, case_min_shared=0)
    [r] = await evaluate(
        [problem], task=TASK, modes=[Mode.FLEX], agents=Agents.single(model), library=lib, config=config
    )
    [actor] = [c.prompt.messages[1].content for c in model.calls if c.role == "actor"]
    # Its own kind's failed case, with the right answer; not a failed case of another kind.
    assert "Example problem: Capital of country 7?" in actor and "Right answer: city7" in actor
    assert "country river" not in actor
    assert r.items[0].correct


async def test_solve_places_guidance_as_flex_mode_does(tmp_path: Path) -> None:
    """Issue 25: solve and guidance() ignored guide_at, so `flex solve` with the embedded chat model put the lessons
    in its actor's prompt, which that model was measured to pay for."""
    import flexlearn
    from flexlearn.loop.solve import solve

    lib = Library.open(tmp_path / "lib.flexlib")
    lib.add(Experience(Zone.WARNING, Level.PRINCIPLE, "capitals", "Never answer nowhere for a capital."), reason="t")
    lib.add(Experience(Zone.GOLDEN, Level.CASE, "capital of country 0", "Capital of country 0: city0."), reason="t")

    def fn(prompt, role, schema):  # type: ignore[no-untyped-def]
        return "Final answer: city0" if role == "actor" else json.dumps({"correct": True})

    for name, review in (("local:qwen2.5-coder-1.5b", True), ("openai:big@http://x/v1", False)):
        model = FunctionModel(fn, name=name)
        solution = await solve("Capital of country 0?", task=TASK, agents=Agents.single(model), library=lib)
        [actor] = [c.prompt.messages[1].content for c in model.calls if c.role == "actor"]
        assert "Capital of country 0: city0." in actor and solution.answer == "city0"
        assert ("Never answer nowhere" in actor) is not review
        assert ("judge" in [c.role for c in model.calls]) is review
    # The same placement for a user's own agent.
    text = flexlearn.guidance(lib, "Capital of country 0?", guide_at="review")
    assert "Capital of country 0: city0." in text and "Never answer nowhere" not in text
    assert "Never answer nowhere" in text.lessons and len(text.ids) == 2
    assert flexlearn.guidance(lib, "Capital of country 0?").lessons == ""
    with pytest.raises(ConfigError, match="guide_at"):
        flexlearn.guidance(lib, "Capital of country 0?", guide_at="system")


def test_flex_reviews_by_default_only_for_an_embedded_chat_model() -> None:
    from flexlearn.loop.episode import guide_at_default

    def reply(prompt, role, schema):  # type: ignore[no-untyped-def]
        return "x"

    assert guide_at_default(FunctionModel(reply, name="local:qwen2.5-coder-1.5b")) == "review"
    assert guide_at_default(FunctionModel(reply, name="local", prompt_kind=PromptKind.COMPLETION)) == "prompt"
    assert guide_at_default(FunctionModel(reply, name="openai:qwen2.5-7b")) == "prompt"
    assert guide_at_default(FunctionModel(reply, name="local:/models/my-7b-instruct.gguf")) == "prompt"
    assert EvalConfig().guide_at is None  # resolved per actor when flex mode runs


async def test_the_review_loop_makes_two_attempts_for_a_local_model_and_three_otherwise() -> None:
    """Unset, agent mode's rounds follow the model, as learning's do: a judge that rejects every attempt gets two
    from a local model and three from any other; set, they are what was asked."""

    def fn(prompt, role, schema):  # type: ignore[no-untyped-def]
        if role == "actor":
            return "Final answer: nowhere"
        return json.dumps({"correct": False, "diagnosis": "answered nowhere", "next_step": "name a city"})

    for name, rounds, attempts in (("local:qwen2.5-coder-1.5b", None, 2), ("openai:big", None, 3), ("local:x", 3, 3)):
        model = FunctionModel(fn, name=name)
        [r] = await evaluate(
            PROBLEMS[:1],
            task=TASK,
            modes=[Mode.AGENT],
            agents=Agents.single(model),
            config=EvalConfig(agent_rounds=rounds),
        )
        assert r.items[0].rounds == attempts, name
        assert [c.role for c in model.calls].count("actor") == attempts
    assert EvalConfig().agent_rounds is None  # resolved per actor when the loop runs
