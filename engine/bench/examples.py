"""The app's examples answered greedily at each precision (`python -m engine.bench decode` prints
whether each precision changes what a user sees first)."""

from __future__ import annotations

from dataclasses import dataclass

from engine.api.frontends import installed_tasks
from engine.api.options import RunOptions
from engine.bench.decode import single_result
from engine.platform.errors import ContextLengthError
from engine.runtime.engine import Engine


@dataclass(frozen=True)
class ExampleAnswer:
    task: str
    example: str  # the example's text (its first input)
    answers: dict[str, str]  # precision -> greedy answer


def example_answers(model: str, precisions: tuple[str, ...], new_tokens: int = 32) -> list[ExampleAnswer]:
    """Each installed task's examples (the ones the app offers), answered greedily at each precision:
    whether a precision changes what a user sees first."""
    engine = Engine()
    found = []
    for name, task in installed_tasks().items():
        for example in task.examples:
            answers = {}
            try:
                for precision in precisions:
                    options = RunOptions(model=model, precision=precision, max_new_tokens=new_tokens)
                    answers[precision] = single_result(task.build(example[0], options), engine).text
            except ContextLengthError as exc:  # e.g. a long document and a tiny model: not this model's example
                print(f"{name}: an example left out ({exc})")
                continue
            found.append(ExampleAnswer(name, example[0], answers))
    return found


def example_lines(answers: list[ExampleAnswer], reference: str) -> list[str]:
    """One line per example: for each precision, `same` when its answer is the reference's."""
    precisions = list(answers[0].answers) if answers else []
    lines = [f"{'task':14} {'example':44} " + " ".join(f"{p:>8}" for p in precisions)]
    for a in answers:
        marks = " ".join(f"{'same' if a.answers[p] == a.answers[reference] else 'differs':>8}" for p in precisions)
        lines.append(f"{a.task:14} {a.example[:44]:44} {marks}")
    return lines
