"""What the engine answers: results with measured metrics, and comparisons."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal


@dataclass
class Metrics:
    """Measured on the request (device synchronised before each clock read), never estimated."""

    prefill_ms: float | None  # None: a remote server that does not report it (engine.backends.openai_protocol)
    ttft_ms: float
    decode_tokens_per_s: float | None  # None when fewer than two tokens were generated
    total_ms: float
    input_tokens: int | None  # None: a remote server that sends no usage
    new_tokens: int
    peak_memory_mb: float | None  # None: remote (the server's memory is not visible from here)
    model_memory_mb: float | None
    device: str
    precision: str
    attention: str
    density: float | None = 1.0  # share of (query, key) pairs the attention computed during prefill (None: remote)
    decode_path: str = (
        "eager"  # eager | compiled | mixed: which decode step ran (engine.runtime.compile); server: remote
    )
    compile_s: float | None = None  # compiled: how long that step took to compile, once, off any request's time
    batch_size: float = 1.0  # sequences per decode step it took part in, on average (continuous batching)
    queue_ms: float = 0.0  # waiting for the engine before its prefill began (not in ttft or total)
    server: dict[str, float] | None = None  # remote: the server's own timings when it sends them (llama.cpp)
    fallbacks: list[str] | None = None  # untested GPU paths that failed in this process, and what runs instead
    # runs measured alone (a comparison's): CPU ms other processes and this one's background work took
    # from the moment the engine started it (engine.platform.measure.OtherWork); None otherwise
    other_work_ms: float | None = None
    # speculative decoding (engine.runtime.speculation): which guesser, the guesses checked and kept,
    # and the decode steps the request took part in (its tokens a step: (new_tokens - 1) / decode_steps);
    # draft: the time its draft model's steps took, within the decode time
    speculation: str = "none"
    proposed_tokens: int = 0
    accepted_tokens: int = 0
    decode_steps: int = 0
    draft_ms: float = 0.0
    sampling: str = "greedy"  # how tokens were picked (RunOptions.sampling_rule); a label scorer's: greedy
    # where the time went (causal models on CPU; None elsewhere): what a decode step read (the weights,
    # once for the batch, and the rows' keys and values) and at what rate, and the prefill's matmul
    # rate, against this machine's measured limits (engine.platform.machine; None until measured)
    decode_read_mb: float | None = None
    decode_gb_per_s: float | None = None
    prefill_gflop_per_s: float | None = None
    machine_read_gb_per_s: float | None = None
    machine_gflop_per_s: float | None = None


FinishReason = Literal["stop", "length", "scored", "time_limit"]


@dataclass
class Alternative:
    token: str  # the text it would add after the token before it
    logprob: float
    token_id: int | None = None  # None: a remote server's, which sends text


@dataclass
class TokenLogprob:
    """A generated token's log-probability under the model, from the logits that chose it (before the
    temperature, top-p, top-k and repetition penalty reshape them for sampling; a remote server's as
    it sends them), and the most likely tokens at its position, best first (`logprobs=k` asks for k)."""

    token: str
    token_id: int | None  # None: a remote server's, which sends text
    logprob: float
    top: list[Alternative]


@dataclass
class Branch:
    """Where an answer branched from the one before it: at token `at` it took an alternative (`now`)
    over the token that answer had there (`was`); `original` is that answer's text."""

    at: int
    was: str
    now: str
    original: str


@dataclass
class Result:
    text: str
    metrics: Metrics
    token_ids: list[int] = field(default_factory=list)
    scores: dict[str, float] | None = None  # classification: label -> probability
    truncated_tokens: int = 0  # input tokens cut to fit the context (0 = nothing cut)
    finish_reason: FinishReason = "stop"
    logprobs: list[TokenLogprob] | None = None  # one per generated token, when the request asked
    branch: Branch | None = None  # a branch's (ui.branches: its logprobs then cover the whole answer)

    def to_dict(self) -> dict:
        return asdict(self)


Verdict = Literal["faster", "slower", "same", "indicative"]  # indicative: too few pairs for a verdict


@dataclass
class Timing:
    """One timing of a comparison over interleaved trials: B vs A, above 1 = B faster."""

    ratio: float  # median of the per-trial paired ratios
    low: float  # interval of that median (bootstrap, 95%); equal to `ratio` with one trial
    high: float
    verdict: Verdict  # "same" when the interval, widened by the measured noise, includes 1; under 3 pairs "indicative"
    trials: int
    noise: float  # relative run-to-run spread of each side on its own (the noise floor)
    a: list[float]  # the per-trial values, A then B (ms, or tokens/s for decode)
    b: list[float]


@dataclass
class Quality:
    """What B costs in quality, teacher-forced on A's output: B scores A's tokens in one forward.

    Generation: per-token KL(A || B) of the next-token distributions, the share of positions where
    both pick the same top token, and each side's perplexity of A's text. Classification: the same
    measures over the two label distributions (perplexities are None), plus their total variation."""

    kl_mean: float
    top1_agreement: float
    perplexity_a: float | None
    perplexity_b: float | None
    tokens: int  # positions scored (labels, for classification)
    tv_distance: float | None = None


@dataclass
class Divergence:
    """Where a comparison's two answers first part: at new token `at`, after the text they share
    (`context`, its end), each side's token there and its position's most likely tokens. Both from one
    teacher-forced forward per side over A's answer, whose tokens before `at` are B's too."""

    at: int
    context: str
    a: TokenLogprob
    b: TokenLogprob


@dataclass
class Comparison:
    """An A/B experiment on one request: A and B differ in one setting (`axis`); the outputs come
    from the first (warm-up) trial, the timings from the interleaved trials after it."""

    axis: str  # attention | precision | model | speculation
    a_label: str
    b_label: str
    a: Result
    b: Result
    prefill: Timing | None  # None when a side does not measure it (a remote server that reports no prefill)
    ttft: Timing
    decode: Timing | None  # None when a side generated fewer than two tokens
    total: Timing
    quality: Quality | None  # None when the two sides cannot score each other's tokens (other tokenizer)
    token_agreement: float  # free-running: share of positions with identical tokens
    first_divergence: int | None  # index of the first differing new token, None if identical
    density: float | None  # share of (query, key) pairs B's attention computed in prefill (None: B is remote)
    quality_note: str = ""  # why quality is missing, when it is
    # Per pair kept, the most CPU ms other work (other processes, background compiles) took during
    # either of its runs; empty when not measured (a server's runs)
    other_work_ms: list[float] = field(default_factory=list)
    redone: int = 0  # pairs run again because other work disturbed them
    disturbed: int = 0  # of the pairs kept, those disturbed even when run again
    divergence: Divergence | None = None  # None: identical, or not scored (engine.experiments.quality)

    def to_dict(self) -> dict:
        return asdict(self)
