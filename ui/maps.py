"""The attention map's view, and its panel under each task tab (the map of the tab's request)."""

from __future__ import annotations

from collections.abc import Callable

import gradio as gr

from engine import OPTIONS, GenerationRequest

from .endpoints import attention_picture, options_of, user_errors
from .results import wire


def map_view() -> tuple[gr.Number, gr.Number, gr.Button, gr.Image, gr.JSON]:
    """Layer and head pickers, the button, the picture and its data."""
    with gr.Row():
        layer = gr.Number(0, label="Layer", precision=0, minimum=0)
        head = gr.Number(0, label="Head", precision=0, minimum=0)
        show = gr.Button("Show the attention map", scale=0)
    image = gr.Image(label="Attention map", interactive=False)
    with gr.Accordion("Map data (JSON)", open=False):
        data = gr.JSON(label="Map data")
    return layer, head, show, image, data


def map_panel(inputs: list[gr.Component], build: Callable[..., GenerationRequest], shared: list[gr.Component]) -> None:
    """The attention map of the tab's request as its inputs and options stand (private: the API has
    /attention_map)."""
    with gr.Accordion("Attention map: what the chosen attention computes, over dense attention", open=False):
        layer, head, show, image, data = map_view()
    own, names = len(inputs), [option.name for option in OPTIONS]

    def picture(*values: object, progress: gr.Progress = gr.Progress()) -> tuple:
        options = options_of(dict(zip(names, values[own + 2 :], strict=True)))
        with user_errors():
            request = build(*values[:own], options)
        return attention_picture(request, values[own], values[own + 1], progress)

    wire([show.click], picture, [*inputs, layer, head, *shared], [image, data])
