"""Controls generated from declarations: each run option's (engine.OPTIONS) and each task input's."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gradio as gr

from engine import OPTIONS, Option, list_models, task_default
from tasks import Input

ACCORDIONS = (
    ("advanced", "Advanced"),
    ("sampling", "Sampling (temperature 0 = greedy)"),
    ("compare", "Compare A vs B (an experiment: interleaved trials, intervals, quality cost)"),
)


def menu(choices: Sequence[Any], value: Any, **common: Any) -> gr.Component:
    """Radio buttons for up to five choices (the comparison axes), else a dropdown."""
    return (gr.Radio if len(choices) <= 5 else gr.Dropdown)(list(choices), value=value, **common)


def control(option: Option, task: str = "dialogue") -> gr.Component:
    """The UI control of one run option, from its declaration; the model menu lists `task`'s models."""
    common = {"label": option.name.replace("_", " ").capitalize(), "info": option.help}
    if option.name == "model":  # what each model is good for in the menu; the task's best loadable one chosen
        chosen = task_default(task)
        choices = [(f"{spec.name} · {spec.description}" if spec.description else spec.name, spec.name)
                   for spec in list_models(task)]  # fmt: skip
        info = f"{option.help}. Here: {chosen.model}, {chosen.reason}."
        return gr.Dropdown(choices, value=chosen.model, **{**common, "info": info})
    if option.choices is not None:
        notes = option.choice_notes or {}
        # (label, value) pairs: the menu says what runs each choice, the API still takes the bare name
        return menu([(f"{c} · {notes[c]}", c) if c in notes else c for c in option.choices], option.default, **common)
    if option.type is bool:
        return gr.Checkbox(value=option.default, **common)
    if option.type is str:
        return gr.Textbox(value=option.default, **common)
    if option.nullable:
        return gr.Number(value=option.default, minimum=option.minimum, maximum=option.maximum, precision=0, **common)
    return gr.Slider(option.minimum, option.maximum, value=option.default, step=option.step, **common)


def controls(task: str, generates: bool = True) -> list[gr.Component]:
    """Every run option's control, in declaration order (the endpoint's parameter order), laid out
    by group: main in a row, the others in accordions; sampling hidden where nothing is generated."""
    made: dict[str, gr.Component] = {}
    with gr.Row():
        for option in OPTIONS:
            if option.group == "main":
                made[option.name] = control(option, task)
    for group, title in ACCORDIONS:
        with gr.Accordion(title, open=False, visible=generates or group != "sampling"):
            for option in OPTIONS:
                if option.group == group:
                    made[option.name] = control(option, task)
    return [made[option.name] for option in OPTIONS]


def input_widget(declared: Input) -> gr.Component:
    """A task input's widget: a menu when it has choices, else a text box."""
    if declared.choices is not None:
        return menu(declared.choices, declared.default, label=declared.label)
    return gr.Textbox(value=declared.default or None, label=declared.label, lines=declared.lines,
                      placeholder=declared.placeholder)  # fmt: skip
