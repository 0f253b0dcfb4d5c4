"""The benchmark command's machinery on a tiny model: counts, speedup bookkeeping, outputs.
(The numbers themselves come from `python -m engine.bench`, not from tests.)"""

from __future__ import annotations

import csv
import json
from dataclasses import fields
from pathlib import Path

import pandas as pd
import pytest
import torch

from engine import Engine, SparseSettings
from engine.api.options import OPTION_BY_NAME
from engine.attention.patterns import PATTERNS, explicit_mask
from engine.bench import (
    PRECISION_COLUMNS,
    SWEEP_COLUMNS,
    PrecisionRow,
    SweepConfig,
    SweepRow,
    corpus_ids,
    format_table,
    main,
    plot_sweep,
    sweep,
    time_attention_op,
    write_outputs,
)
from engine.bench.__main__ import _parser
from engine.bench.soak import SOAK_COLUMNS, plan
from engine.data import long_document
from engine.experiments.attention_op import allowed_pairs
from engine.experiments.compare import interleaved
from engine.experiments.statistics import UNMEASURED_NOISE

VERDICTS = ("faster", "slower", "same", "indicative")


@pytest.mark.parametrize(("length", "window", "sinks"), [(10, 4, 2), (100, 16, 4), (64, 64, 4), (7, 512, 4)])
def testallowed_pairs_counts_the_explicit_mask(length, window, sinks):
    settings = SparseSettings(window=window, sinks=sinks)
    pos = torch.arange(length)
    assert allowed_pairs(settings, length) == int(explicit_mask(PATTERNS["sliding_sinks"], settings, pos, pos).sum())


def test_corpus_is_the_packaged_long_document_repeated():
    text = long_document()
    assert text.startswith(" " * 20 + "GNU GENERAL PUBLIC LICENSE") and len(text) > 10_000

    def tokenizer(value):  # one id per character: the corpus is the document, repeated
        return {"input_ids": [ord(c) for c in value]}

    ids = corpus_ids(tokenizer, 2 * len(text) + 5)[0].tolist()
    assert "".join(map(chr, ids)) == text + text + text[:5]


def test_sparse_flags_come_from_the_run_options():
    args = _parser().parse_args([])
    for name in ("window", "sinks", "block_size", "pattern"):
        assert getattr(args, name) == OPTION_BY_NAME[name].default
    actions = {a.dest: a for a in _parser()._actions}
    assert OPTION_BY_NAME["window"].help in actions["window"].help
    assert tuple(actions["pattern"].choices) == OPTION_BY_NAME["pattern"].choices


def test_dense_and_sparse_run_interleaved_after_a_warm_up():
    calls = []

    def run(mode):
        def call():
            calls.append(mode)
            return f"{mode}{len(calls)}"

        return call

    assert interleaved(run("d"), run("s"), 3) == (["d3", "d6", "d7"], ["s4", "s5", "s8"])
    assert calls == ["d", "s", "d", "s", "s", "d", "d", "s"]  # warm-up, then D S, S D, D S
    calls.clear()
    assert interleaved(run("d"), run("s"), 2, warmup=False) == (["d1", "d4"], ["s2", "s3"])


def test_op_timings_are_paired_trials(tiny_env):
    loaded = Engine(budget_mb=10_000, device=torch.device("cpu")).get("tiny-llama", "fp32")
    op = time_attention_op(loaded, 64, SparseSettings(window=16, sinks=2, block_size=16), repeats=2)
    assert (op.prefill.trials, op.decode.trials) == (2, 10)  # the decode step: 5x the repeats
    assert len(op.prefill.a) == len(op.prefill.b) == 2 and all(t > 0 for t in op.prefill.a + op.prefill.b)
    assert op.prefill.noise >= 0.01 and op.prefill.noise != UNMEASURED_NOISE  # measured with 2 trials
    for timing in (op.prefill, op.decode):
        assert timing.low <= timing.ratio <= timing.high and timing.verdict in VERDICTS
    assert op.density[0] == 1.0 and 0 < op.density[1] < 1 and all(p >= 0 for p in op.plan_ms)


def test_sweep_rows_speedups_and_outputs(tiny_env, tmp_path):
    cache = Engine(budget_mb=10_000, device=torch.device("cpu"))
    config = SweepConfig(
        model="tiny-llama",
        lengths=(64, 256),
        settings=SparseSettings(window=32, sinks=2, block_size=16),
        decode_tokens=3,
        repeats=1,
    )
    seen = []
    rows = sweep(config, cache, progress=lambda fraction, message: seen.append(fraction))
    assert [(r.length, r.mode) for r in rows] == [(64, "dense"), (64, "sparse"), (256, "dense"), (256, "sparse")]
    assert seen[0] == 0.0 and seen[-1] == 1.0
    dense, sparse = rows[2], rows[3]
    assert dense.density == 1.0 and dense.op_speedup is None
    names = [f.name for f in fields(SweepRow)]
    assert all(getattr(dense, name) is None for name in names[names.index("op_speedup") :])  # sparse rows only
    assert 0 < sparse.density < 0.5 and sparse.flop_limit > 2
    assert sparse.op_speedup == pytest.approx(dense.op_prefill_ms / sparse.op_prefill_ms)  # one paired trial
    assert sparse.model_prefill_ms > 0 and sparse.model_decode_tokens_per_s > 0 and sparse.model_peak_memory_mb > 0
    # Each speedup is a comparison: an interval holding it and a verdict; one op trial measures no noise.
    for speedup in ("op", "op_decode", "model_prefill", "model_decode"):
        ratio, low, high = (getattr(sparse, f"{speedup}_speedup{end}") for end in ("", "_low", "_high"))
        assert low <= ratio <= high and getattr(sparse, f"{speedup}_verdict") in VERDICTS
    assert sparse.op_speedup_low == sparse.op_speedup == sparse.op_speedup_high  # one trial: no interval
    assert sparse.noise == UNMEASURED_NOISE
    assert sparse.op_verdict == "indicative"  # one pair: a ratio, never faster or slower
    assert sparse.model_prefill_speedup_low <= sparse.model_prefill_speedup_high  # model_repeats=2 by default
    table = format_table(rows, SWEEP_COLUMNS).splitlines()
    assert table[0].split() == SWEEP_COLUMNS and len(table) == 5
    assert table[1].split()[SWEEP_COLUMNS.index("op_speedup")] == "-"  # None shows as "-"
    assert table[1].split()[SWEEP_COLUMNS.index("op_interval")] == "-"
    cells = table[4].split()
    assert cells[SWEEP_COLUMNS.index("op_interval")] == f"{sparse.op_speedup_low:.3f}-{sparse.op_speedup_high:.3f}"
    assert cells[SWEEP_COLUMNS.index("op_verdict")] == sparse.op_verdict
    assert cells[SWEEP_COLUMNS.index("noise")] == "0.100"
    assert SWEEP_COLUMNS.index("noise") == SWEEP_COLUMNS.index("flop_limit") + 1

    paths = write_outputs(rows, tmp_path, "attention", plot_sweep, {"model": "tiny-llama"})
    saved = json.loads(paths[0].read_text())
    assert saved["meta"] == {"model": "tiny-llama"} and saved["rows"][3]["mode"] == "sparse"
    assert saved["rows"][2]["op_speedup"] is None and saved["rows"][3]["op_speedup"] == sparse.op_speedup
    assert saved["rows"][3]["op_speedup_low"] == sparse.op_speedup_low and saved["rows"][3]["noise"] == 0.1
    assert "op_interval" not in saved["rows"][3]  # the files hold the numbers, not the printed interval
    assert len(list(csv.DictReader(paths[1].open()))) == 4
    assert paths[2].read_bytes()[:4] == b"\x89PNG"


def test_table_format_matches_the_hand_made_one():
    rows = [
        PrecisionRow("fp32", 0.8841, 513.123, 713.04, None, 968.2, 1.0, "a"),
        PrecisionRow("nf4", 12.5, 9.99949, 1.0, 23.46, 7.0, 0.171875, "b"),
    ]
    assert format_table(rows, PRECISION_COLUMNS) == "\n".join(
        [
            "precision  load_s  footprint_mb  prefill_ms  decode_tokens_per_s  peak_memory_mb  agreement_with_fp32",
            "     fp32   0.884         513.1       713.0                    -           968.2                1.000",
            "      nf4    12.5         9.999       1.000                 23.5           7.000                0.172",
        ]
    )
    assert format_table([]) == "(no rows)"
    assert format_table(rows).splitlines()[0].split() == [f.name for f in fields(PrecisionRow)]


def test_cli_table_and_csv_come_from_pandas(tiny_env, tmp_path, capsys, monkeypatch):
    made = []  # (method, columns) of every DataFrame the CLI rendered

    def spy(method):
        original = getattr(pd.DataFrame, method)

        def wrapper(self, *args, **kwargs):
            made.append((method, list(self.columns)))
            return original(self, *args, **kwargs)

        return wrapper

    for method in ("to_string", "to_csv"):
        monkeypatch.setattr(pd.DataFrame, method, spy(method))
    argv = ["--model", "tiny-llama", "--lengths", "32,64", "--window", "16", "--repeats", "1", "--op-only"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    every_field = [f.name for f in fields(SweepRow)]
    assert made == [("to_string", SWEEP_COLUMNS), ("to_csv", every_field)]

    header, *lines = capsys.readouterr().out.splitlines()
    assert header.split() == SWEEP_COLUMNS and len(lines) == 4
    assert all(line.split()[SWEEP_COLUMNS.index("model_prefill_ms")] == "-" for line in lines)  # --op-only
    frame = pd.read_csv(tmp_path / "attention.csv")
    assert list(frame.columns) == every_field
    assert frame["mode"].tolist() == ["dense", "sparse"] * 2 and frame["length"].tolist() == [32, 32, 64, 64]
    assert frame["model_prefill_ms"].isna().all() and (frame["op_prefill_ms"] > 0).all()


def test_cli_writes_files_and_rejects_unknown_model(tiny_env, tmp_path, capsys):
    argv = ["--model", "tiny-llama", "--lengths", "32,64", "--window", "16", "--repeats", "1", "--op-only"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    assert "flop_limit" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["attention.csv", "attention.json", "attention.png"]
    assert main(["--model", "no-such-model", "--lengths", "32"]) == 2
    assert main([*argv, "--precisions", "fp8"]) == 2  # validated before anything is loaded


def test_cli_precision_suite(tiny_env, tmp_path, capsys):
    argv = ["precision", "--model", "tiny-llama", "--precisions", "fp32,bf16", "--input-tokens", "32"]
    assert main([*argv, "--new-tokens", "4", "--out", str(tmp_path)]) == 0
    header, *lines = capsys.readouterr().out.splitlines()
    assert header.split() == PRECISION_COLUMNS and [line.split()[0] for line in lines] == ["fp32", "bf16"]
    assert lines[0].split()[-1] == "1.000"  # fp32 agrees with itself
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precision.csv", "precision.json", "precision.png"]
    rows = json.loads((tmp_path / "precision.json").read_text())["rows"]
    assert [r["precision"] for r in rows] == ["fp32", "bf16"] and all(r["load_s"] > 0 for r in rows)


def test_cli_compare_suite_runs_real_comparisons(tiny_env, tmp_path, capsys):
    """`python -m engine.bench compare` on a tiny model: one row per comparison, the files written."""
    argv = ["compare", "--model", "tiny-llama", "--runs", "precision=1", "--out", str(tmp_path)]
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "prefill_verdict" in table.splitlines()[0] and "fp32" in table and "nf4" in table
    rows = json.loads((tmp_path / "compare.json").read_text())["rows"]
    assert len(rows) == 1 and rows[0]["a"] == "fp32" and rows[0]["b"] == "nf4"
    assert rows[0]["prefill_low"] <= rows[0]["prefill_ratio"] <= rows[0]["prefill_high"]
    assert rows[0]["kl_mean"] is not None and rows[0]["trials"] >= 3
    assert (tmp_path / "compare.png").read_bytes()[:4] == b"\x89PNG"


def test_decode_suite_times_each_precision_eager_and_compiled(tiny_env):
    from engine.bench.decode import decode_table

    rows = decode_table("tiny-llama", ("fp32", "nf4"), new_tokens=8, repeats=1)
    assert [(r.precision, r.path) for r in rows] == [("fp32", "eager"), ("fp32", "compiled"), ("nf4", "eager")]
    eager, compiled, _ = rows
    assert compiled.compile_cold_s > 0 and compiled.compile_warm_s > 0 and eager.compile_cold_s is None
    assert all(r.decode_tokens_per_s > 0 and r.gb_per_s > 0 for r in rows)
    # a request's own time split reads the keys and values too: more than the weights alone
    assert all(r.time_split_gb_per_s >= r.gb_per_s for r in rows)
    assert all(r.vs_llama_cpp is None for r in rows)  # a local model has no GGUF for llama.cpp to run
    assert (
        eager.kl_vs_reference == pytest.approx(0, abs=1e-6) and eager.top1_vs_reference == 1.0
    )  # fp32 is the reference
    assert rows[2].kl_vs_reference > 0 and all(r.long_prefill_tokens_per_s > 0 for r in rows)


def test_auto_is_the_fastest_precision_that_keeps_quality():
    from engine.bench.auto import auto_choice
    from engine.bench.decode import DecodeRow

    def row(precision, path, rate, kl, top1, long_rate=1000.0):
        return DecodeRow("studio", precision, path, rate, 100.0, 128, 100.0, 1.0, kl_vs_reference=kl,
                         top1_vs_reference=top1, long_prefill_tokens_per_s=long_rate)  # fmt: skip

    rows = [
        row("fp32", "eager", 15, 0.0, 1.0), row("fp32", "compiled", 18, 0.0, 1.0),
        row("bf16", "compiled", 30, 0.001, 0.97),
        row("int4-wo", "compiled", 90, 0.2, 0.8),  # fastest, but changes the output
        row("int8-wo", "compiled", 45, 0.006, 0.94),  # costs more than llama.cpp's own kernels (KL 0.003)
        row("fp16", "compiled", 40, 0.0, 1.0, long_rate=50),  # fast decode, very slow long prefill
    ]  # fmt: skip
    choice, why = auto_choice(rows, 128)
    assert choice == "bf16" and why[-1].startswith("auto on this machine: bf16")
    assert any(line.startswith("int4-wo") and "changes output" in line for line in why)
    assert any(line.startswith("int8-wo") and "changes output" in line for line in why)


def test_the_apps_examples_are_answered_at_each_precision(tiny_env):
    from engine.bench.examples import example_answers, example_lines

    answers = example_answers("tiny-llama", ("fp32", "nf4"), new_tokens=4)
    tasks = {a.task for a in answers}
    assert {"dialogue", "translation", "code"} <= tasks  # every installed task's examples
    assert all(set(a.answers) == {"fp32", "nf4"} for a in answers)
    lines = example_lines(answers, reference="fp32")
    assert len(lines) == len(answers) + 1 and lines[0].split()[-2:] == ["fp32", "nf4"]
    assert all(line.split()[-2] == "same" for line in lines[1:])  # the reference against itself
    for answer, line in zip(answers, lines[1:], strict=True):
        assert line.split()[-1] == ("same" if answer.answers["nf4"] == answer.answers["fp32"] else "differs")


def test_memory_bandwidth_is_measured():
    from engine.platform.measure import memory_bandwidth

    rates = memory_bandwidth(megabytes=64, repeats=2)
    assert set(rates) == {"read_gb_per_s", "copy_gb_per_s"} and all(0.1 < v < 10_000 for v in rates.values())


def test_serve_suite_runs_users_batched_and_one_at_a_time(tiny_env, tmp_path, capsys):
    """`python -m engine.bench serve` on a tiny model: a row per mode and user count (and the mixed
    dense / sparse round), none failed; one at a time never batches, and 4 users at once share steps."""
    argv = ["serve", "--model", "tiny-llama", "--precisions", "int8", "--users", "1,4", "--per-user", "2"]
    assert main([*argv, "--new-tokens", "12", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "serve.json").read_text())["rows"]
    assert [(r["mode"], r["users"]) for r in rows] == [
        ("batched", 1),
        ("batched", 4),
        ("batched, half sparse", 4),
        ("one-at-a-time", 1),
        ("one-at-a-time", 4),
    ]
    assert all(r["failures"] == 0 and r["requests"] == 2 * r["users"] and r["tokens_per_s"] > 0 for r in rows)
    assert all(r["mean_batch"] == 1 for r in rows if r["mode"] == "one-at-a-time" or r["users"] == 1)
    assert rows[1]["mean_batch"] > 1
    assert rows[0]["vs_one_user"] == 1 and (tmp_path / "serve.png").read_bytes()[:4] == b"\x89PNG"
    assert "tokens_per_s" in capsys.readouterr().out


def test_arrivals_suite_times_the_streams_gaps_per_prefill_chunk(tiny_env, tmp_path):
    """`python -m engine.bench arrivals` on a tiny model: a row per chunk size, every arrival answered,
    the streams' gaps measured before and while the users arrived."""
    argv = ["arrivals", "--model", "tiny-llama", "--precisions", "int8", "--users", "2", "--arrivals", "3"]
    assert main([*argv, "--chunks", "0,4", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "arrivals.json").read_text())["rows"]
    assert [(r["prefill_chunk"], r["streams"], r["arrivals"]) for r in rows] == [(0, 2, 3), (4, 2, 3)]
    for r in rows:
        assert 0 < r["quiet_p50_gap_ms"] <= r["quiet_p95_gap_ms"] and r["arriving_p95_gap_ms"] <= r["longest_gap_ms"]
        assert r["p95_over_quiet"] == pytest.approx(r["arriving_p95_gap_ms"] / r["quiet_p95_gap_ms"])
        assert r["arrival_input_tokens"] > 4 and r["arrival_ttft_p50_ms"] > 0
    assert (tmp_path / "arrivals.png").read_bytes()[:4] == b"\x89PNG"


def test_logprobs_suite_pairs_rounds_without_and_with_logprobs(tiny_env, tmp_path, capsys):
    """`python -m engine.bench logprobs` on a tiny model: a row per user count, the pairs' ratio within
    its range, and the same tokens answered with and without (greedy)."""
    argv = ["logprobs", "--model", "tiny-llama", "--precisions", "fp32", "--users", "1,3", "--repeats", "2"]
    assert main([*argv, "--logprobs", "4", "--new-tokens", "10", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "logprobs.json").read_text())["rows"]
    assert [(r["users"], r["logprobs"]) for r in rows] == [(1, 4), (3, 4)]
    for r in rows:
        assert r["ratio_low"] <= r["ratio"] <= r["ratio_high"] and r["plain_tokens_per_s"] > 0
        assert r["tokens_plain"] == r["tokens_logprobs"] > 0
    assert (tmp_path / "logprobs.png").read_bytes()[:4] == b"\x89PNG" and "ratio" in capsys.readouterr().out


def test_frontier_suite_scores_patterns_against_dense(tiny_env, tmp_path, capsys):
    """`python -m engine.bench frontier` on a tiny model: per text, dense and each pattern at the
    budget, with the JSON fields the frontier's readers use; dense scores itself perfectly, the
    sparse rows keep a share of the keys and of the attention mass, and each row is measured."""
    argv = ["frontier", "--model", "tiny-llama", "--precisions", "fp32", "--lengths", "160", "--densities", "0.6"]
    assert main([*argv, "--compiled", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "frontier.json").read_text())["rows"]
    assert [(r["text"], r["pattern"]) for r in rows] == [
        (text, pattern) for text in ("prose", "code") for pattern in ("dense", "sliding_sinks", "quest", "block_topk")
    ]
    wanted = {"pattern", "length", "budget", "density", "kl_mean", "top1_agreement", "mass_recall",
              "prefill_speedup", "decode_speedup"}  # fmt: skip
    assert all(wanted <= set(r) for r in rows)
    for r in rows:
        if r["pattern"] == "dense":
            assert (r["kl_mean"], r["top1_agreement"], r["density"], r["mass_recall"]) == (0, 1, 1, 1)
        else:
            assert 0 < r["density"] < 1 and 0 < r["mass_recall"] < 1 and r["kl_mean"] >= 0
            assert r["decode_low"] <= r["decode_speedup"] <= r["decode_high"] and r["prefill_ms"] > 0
    sliding = [r for r in rows if r["pattern"] == "sliding_sinks"]
    # sinks + window = 96 of the keys before each step (the steps stand at 136 to 158)
    assert all(abs(r["density"] - 96 / 148) < 0.03 for r in sliding)
    assert {r["decode_path"] for r in rows} == {"compiled"}  # --compiled: the steps timed are the compiled ones
    assert (tmp_path / "frontier.png").read_bytes()[:4] == b"\x89PNG"
    assert "mass_recall" in capsys.readouterr().out


def test_soak_suite_reads_memory_and_the_engines_accounting_at_rest(tiny_env, tmp_path, capsys):
    """`python -m engine.bench soak` on a tiny model: a row before the first request and one every 25,
    each read at rest (no batch alive, no admission left), every mixed request answered."""
    argv = ["soak", "--model", "tiny-llama", "--requests", "30", "--users", "3", "--new-tokens", "4"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    saved = json.loads((tmp_path / "soak.json").read_text())
    rows = saved["rows"]
    assert [r["requests"] for r in rows] == [0, 25, 30] and saved["meta"]["users"] == 3
    assert all(r["failures"] == 0 and r["caches_mb"] == 0 and r["admitted"] == 0 for r in rows)
    assert all(r["rss_mb"] > r["models_mb"] > 0 for r in rows)
    assert rows[-1]["compiled_steps"] == 0  # the tests' settings compile nothing
    out = capsys.readouterr().out
    assert "no row after request 100" in out and out.splitlines()[1].split() == SOAK_COLUMNS
    assert (tmp_path / "soak.png").read_bytes()[:4] == b"\x89PNG"


def test_soak_requests_are_the_same_every_run_and_mix_the_tasks(tiny_env):
    from engine import installed_tasks

    first, again = plan(40, 8, "tiny-llama"), plan(40, 8, "tiny-llama")
    assert first == again and len(set(first)) > 10
    kinds = {("candidates" if r.candidates else "messages" if r.messages else "text") for r in first}
    assert "candidates" in kinds and "messages" in kinds and len(installed_tasks()) == 5
    assert all(r.options.max_new_tokens <= 8 and r.options.model == "tiny-llama" for r in first)


def test_serve_sizes_builds_each_model_at_its_configured_size_and_serves_it(studio_env, tmp_path, monkeypatch):
    """`python -m engine.bench serve --sizes`: each model is built from its configuration with random
    weights, once, and served like any other (a seq2seq model's users send texts); a row per model,
    mode and user count, none failed."""
    from engine.bench import sizes

    studio_env("STUDIO_CACHE", str(tmp_path / "cache"))
    small = {"encoder_layers": 1, "decoder_layers": 1, "encoder_attention_heads": 2, "decoder_attention_heads": 2}
    monkeypatch.setitem(sizes.SIZES, "tiny-causal", sizes.Size("llama", "AutoModelForCausalLM", {
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 49152, "max_position_embeddings": 512}))  # fmt: skip
    monkeypatch.setitem(sizes.SIZES, "tiny-seq2seq", sizes.Size("marian", "AutoModelForSeq2SeqLM", {
        "d_model": 16, "encoder_ffn_dim": 32, "decoder_ffn_dim": 32, "vocab_size": 49153, "pad_token_id": 49152,
        "decoder_start_token_id": 49152, "eos_token_id": 0, "max_position_embeddings": 256, **small}))  # fmt: skip
    argv = ["serve", "--sizes", "tiny-causal,tiny-seq2seq", "--precisions", "fp32", "--users", "1,2"]
    assert main([*argv, "--per-user", "1", "--new-tokens", "6", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "serve-sizes.json").read_text())["rows"]
    assert [(r["model"], r["mode"], r["users"]) for r in rows] == [
        ("tiny-causal", "batched", 1),
        ("tiny-causal", "batched", 2),
        ("tiny-causal", "batched, half sparse", 2),
        ("tiny-causal", "one-at-a-time", 1),
        ("tiny-causal", "one-at-a-time", 2),
        ("tiny-seq2seq", "batched", 1),
        ("tiny-seq2seq", "batched", 2),
        ("tiny-seq2seq", "batched, half sparse", 2),
        ("tiny-seq2seq", "one-at-a-time", 1),
        ("tiny-seq2seq", "one-at-a-time", 2),
    ]
    assert all(r["failures"] == 0 and r["tokens_per_s"] > 0 for r in rows)
    assert next(r for r in rows if r["model"] == "tiny-seq2seq" and r["users"] == 2)["mean_batch"] > 1  # batched
    directory = Path(sizes.built("tiny-seq2seq").removeprefix("local:"))
    config = json.loads((directory / "config.json").read_text())
    assert (config["model_type"], config["d_model"], config["vocab_size"]) == ("marian", 16, 49153)
    built_at = (directory / "model.safetensors").stat().st_mtime_ns
    sizes.built("tiny-seq2seq")  # built once: the second call finds it
    assert (directory / "model.safetensors").stat().st_mtime_ns == built_at
