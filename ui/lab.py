"""The Lab tab: the benchmark sweep, the speed-quality frontier and the attention map of any prompt,
each an API endpoint of its own. Not a task: it measures the engine rather than asking it something."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import gradio as gr
import pandas as pd

from engine import FRONTIER_DENSITIES as DENSITIES
from engine import FRONTIER_LENGTHS, MAP_TOKENS, OPTION_BY_NAME, GenerationRequest, options_from

from . import benchmarks
from .controls import control, controls
from .endpoints import PARAMETER, attention_picture, endpoint, reporter, user_errors, with_options_doc
from .maps import map_view
from .results import wire

SWEEP_OPTIONS = ("model", "precision", "window", "sinks", "pattern", "block_size")
FRONTIER_OPTIONS = ("model", "precision")
MAP_MODELS = "dialogue"  # the map shows decoder models: the chat models' list (it prefills, then one greedy step)


def benchmark(model: str, precision: str, lengths: list[int], window: float, sinks: float, whole_model: bool,
              decode_tokens: float, pattern: str = "auto", block_size: float = 64,
              progress=gr.Progress()) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """Benchmark dense vs sparse attention across sequence lengths on one model.

    Args:
        lengths: sequence lengths in tokens (each at most the model's context)
        whole_model: also time the whole model (prefill, decode, peak memory), not only the attention op
        decode_tokens: decode steps timed after each whole-model prefill
    Returns:
        attention-op ms per length and mode, whole-model prefill ms per length and mode, and the full table
    """
    values = {"model": model, "precision": precision, "window": window, "sinks": sinks, "pattern": pattern}
    with user_errors():
        options = options_from({**values, "block_size": block_size})
        return benchmarks.run(lengths, whole_model, int(decode_tokens), options, reporter(progress))


def frontier(model: str, precision: str, lengths: list[int], budgets: list[float], compiled: bool,
             progress=gr.Progress()) -> tuple[str, pd.DataFrame]:  # fmt: skip
    """The speed-quality frontier of the sparse patterns (engine.bench frontier) on one model.

    Args:
        lengths: sequence lengths in tokens (2048, 4096, 8192)
        budgets: keys each decode step reads, as shares of the length (e.g. 0.06, 0.12)
        compiled: time the compiled decode steps (each compiled first) instead of eager ones
    Returns:
        the frontier plot (decode and prefill speedups against mean KL to dense, per length) and the table
    """
    with user_errors():
        options = options_from({"model": model, "precision": precision})
        return benchmarks.run_frontier(lengths, budgets, compiled, options, reporter(progress))


for lab_run, names in ((benchmark, SWEEP_OPTIONS), (frontier, FRONTIER_OPTIONS)):
    lab_run.__doc__ = with_options_doc(lab_run.__doc__, [OPTION_BY_NAME[name] for name in names])


def _picture(values: dict[str, Any], request: GenerationRequest, progress: gr.Progress) -> Iterator[tuple]:
    yield attention_picture(request, values["layer"], values["head"], progress)


ATTENTION_MAP_DOC = f"""The attention picture of a prompt at one layer and query head: the (query block, key block) tiles
    the chosen attention computes at prefill, drawn over dense attention's probabilities, and the keys
    the first decode step reads. Decoder (causal) models.

    Args:
        text: the prompt as the model reads it (no chat template applied)
        layer: the layer, from 0
        head: the query head, from 0
    Returns:
        the picture, and its data as JSON (tiles, density, mass recall, decode keys; the dense
        probabilities for prompts up to {MAP_TOKENS} tokens, per tile beyond)
    """
attention_map = endpoint(
    "attention_map",
    ATTENTION_MAP_DOC,
    [
        inspect.Parameter(name, PARAMETER, annotation=kind)
        for name, kind in (("text", str), ("layer", int), ("head", int))
    ],
    lambda values, options: GenerationRequest(options, text=values["text"]),
    _picture,
)


def lab_tab() -> None:
    with gr.Tab("Lab"):
        gr.Markdown(
            "Dense vs sparse attention across sequence lengths on the chosen model: the attention op alone "
            "(one layer, model shapes) and the whole model. Long lengths take a while on CPU."
        )
        sweep = {name: control(OPTION_BY_NAME[name]) for name in SWEEP_OPTIONS}
        lengths = gr.CheckboxGroup(list(benchmarks.LENGTHS), value=list(benchmarks.DEFAULT_LENGTHS),
                                   label="Sequence lengths")  # fmt: skip
        with gr.Row():
            whole = gr.Checkbox(value=True, label="Whole model too (prefill, decode, memory)")
            decode = gr.Slider(1, 64, value=8, step=1, label="Decode tokens")
        run_sweep = gr.Button("Run benchmark", variant="primary")
        with gr.Row():
            op_plot = gr.LinePlot(x="tokens", y="ms", color="mode", title="Attention op, one layer (ms)")
            model_plot = gr.LinePlot(x="tokens", y="ms", color="mode", title="Whole-model prefill (ms)")
        table = gr.Dataframe(label="Results", interactive=False)
        gr.Markdown(
            "### Speed–quality frontier\nEach pattern at each budget on two long real texts (prose, code): "
            "quality against dense attention (mean KL, top-1 agreement), the share of dense attention's mass "
            "kept, and prefill and decode speed. Minutes per length on CPU; the engine serves no one meanwhile."
        )
        frontier_controls = [control(OPTION_BY_NAME[name]) for name in FRONTIER_OPTIONS]
        with gr.Row():
            frontier_lengths = gr.CheckboxGroup([(f"{n // 1024}k", n) for n in FRONTIER_LENGTHS], value=[2048],
                                                label="Lengths (tokens)")  # fmt: skip
            budgets = gr.CheckboxGroup(list(DENSITIES), value=list(DENSITIES), label="Budgets (share of the length)")
            compiled = gr.Checkbox(False, label="Time compiled decode steps (compiles each step first)")
        run_frontier = gr.Button("Run the frontier", variant="primary")
        frontier_plot = gr.Image(label="Decode and prefill speedups against mean KL to dense", interactive=False)
        frontier_table = gr.Dataframe(label="Frontier", interactive=False)
        wire([run_frontier.click], frontier, [*frontier_controls, frontier_lengths, budgets, compiled],
             [frontier_plot, frontier_table], "frontier")  # fmt: skip
        gr.Markdown(
            "### Attention map of any prompt\nThe prompt as the model reads it (no chat template): the tiles "
            "the chosen attention computes over dense attention's probabilities, and the keys the first decode "
            "step reads. Each task tab has the same map for its own request."
        )
        text = gr.Textbox(label="Prompt", lines=4)
        shared = controls(MAP_MODELS, generates=False)
        layer, head, show, image, data = map_view()
        wire([show.click], attention_map, [text, layer, head, *shared], [image, data], "attention_map")
        s = sweep
        sweep_inputs = [s["model"], s["precision"], lengths, s["window"], s["sinks"], whole, decode, s["pattern"],
                        s["block_size"]]  # fmt: skip
        wire([run_sweep.click], benchmark, sweep_inputs, [op_plot, model_plot, table], "benchmark")
