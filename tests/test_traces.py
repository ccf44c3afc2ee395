"""Trace readers (Azure 2023/2024, BurstGPT, Mooncake, plain CSV), their error messages, and
the window / scaling / cap transforms."""

from __future__ import annotations

import csv
import json
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from rlscale.sim.workload import (
    TraceFormatError,
    Workload,
    cap_total_tokens,
    rate_scaled,
    read_trace,
    time_scaled,
    window,
)

TRACES = Path(__file__).resolve().parents[2] / "shared/data/traces"
needs_traces = pytest.mark.skipif(
    not (TRACES / "AzureLLMInferenceTrace_conv.csv").is_file(),
    reason=f"Azure LLM inference traces not found in {TRACES} (expected shared/ beside the repo)",
)
AZURE_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens"
BURST_HEADER = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type"


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------ real Azure traces


@needs_traces
@pytest.mark.parametrize(
    ("name", "requests", "span_min", "start", "prompt_range", "output_range"),
    [
        ("code", 8_819, 57.27, "2023-11-16 18:17:03.9799600", (3, 7437), (6, 1899)),
        ("conv", 19_366, 58.36, "2023-11-16 18:15:46.6805900", (2, 14050), (7, 1000)),
    ],
)
def test_real_azure_trace(
    name: str,
    requests: int,
    span_min: float,
    start: str,
    prompt_range: tuple[int, int],
    output_range: tuple[int, int],
) -> None:
    path = TRACES / f"AzureLLMInferenceTrace_{name}.csv"
    t0 = time.perf_counter()
    w = read_trace(path)
    assert time.perf_counter() - t0 < 1.0
    assert len(w) == requests
    assert w.duration_s / 60 == pytest.approx(span_min, abs=0.01)
    assert w.arrival_s[0] == 0.0
    assert np.all(np.diff(w.arrival_s) >= 0)
    assert (int(w.prompt_tokens.min()), int(w.prompt_tokens.max())) == prompt_range
    assert (int(w.output_tokens.min()), int(w.output_tokens.max())) == output_range
    assert w.source == path.name
    assert w.metadata["format"] == "azure"
    assert w.metadata["start"] == start
    assert w.metadata["rows"] == requests
    assert w.metadata["clamped_output"] == 0
    assert w.metadata["reordered"] is False
    # Independent check against the csv module and datetime (microsecond precision).
    with path.open(newline="") as f:
        rows = list(csv.reader(f))[1:]
    assert w.prompt_tokens.tolist() == [int(r[1]) for r in rows]
    assert w.output_tokens.tolist() == [int(r[2]) for r in rows]
    first = datetime.fromisoformat(rows[0][0][:26])
    for i in (1, 100, len(rows) - 1):
        expected = (datetime.fromisoformat(rows[i][0][:26]) - first).total_seconds()
        assert w.arrival_s[i] == pytest.approx(expected, abs=2e-6)


# ------------------------------------------------------------------------------- Azure parsing


def test_azure_timestamps_2023_and_2024_formats(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "azure.csv",
        f"{AZURE_HEADER}\n"
        "2024-05-10 00:00:00.009930+00:00,100,10\n"  # 2024: 6 digits and an offset
        "2024-05-10 00:00:01.0000001,200,20\n"  # 2023: 7 digits
        "2024-05-10T00:00:02Z,300,30\n"  # T separator, Z, no fraction
        "2024-05-10 02:00:03.5+02:00,400,40\n"  # 00:00:03.5 UTC
        "2024-05-10 00:00:04.123456789,500,50\n"  # 9 digits
        "2024-05-11 00:00:00.0,600,60\n",  # next day
    )
    w = read_trace(path)
    expected = [0.0, 0.9900701, 1.99007, 3.49007, 4.113526789, 86399.99007]
    np.testing.assert_allclose(w.arrival_s, expected, atol=1e-7)
    assert w.prompt_tokens.tolist() == [100, 200, 300, 400, 500, 600]
    assert w.metadata["start"] == "2024-05-10 00:00:00.009930+00:00"
    assert w.metadata["start_s"] == pytest.approx(
        datetime.fromisoformat("2024-05-10 00:00:00.009930+00:00").timestamp()
    )


def test_azure_zero_output_is_clamped_and_counted(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "a.csv",
        f"{AZURE_HEADER}\n2023-11-16 18:00:00.0,10,0\n2023-11-16 18:00:01.0,20,5\n",
    )
    w = read_trace(path)
    assert w.output_tokens.tolist() == [1, 5]
    assert w.metadata["clamped_output"] == 1


def test_unsorted_rows_are_sorted_stably(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "a.csv",
        f"{AZURE_HEADER}\n"
        "2023-11-16 18:00:05.0,1,1\n"
        "2023-11-16 18:00:01.0,2,2\n"
        "2023-11-16 18:00:05.0,3,3\n"
        "2023-11-16 18:00:03.0,4,4\n",
    )
    w = read_trace(path)
    assert w.arrival_s.tolist() == [0.0, 2.0, 4.0, 4.0]
    assert w.prompt_tokens.tolist() == [2, 4, 1, 3]  # ties keep file order
    assert w.metadata["reordered"] is True
    assert w.metadata["start"] == "2023-11-16 18:00:01.0"


def test_blank_lines_and_bom_are_tolerated(tmp_path: Path) -> None:
    rows = "2023-11-16 18:00:00.5,10,3\r\n\r\n2023-11-16 18:00:01.5,20,4\r\n"
    text = f"\ufeff{AZURE_HEADER}\r\n{rows}"
    w = read_trace(write(tmp_path, "a.csv", text))
    assert w.arrival_s.tolist() == [0.0, 1.0]


# ----------------------------------------------------------------------------- BurstGPT, Mooncake


BURST_SAMPLE = f"""{BURST_HEADER}
5,ChatGPT,472,18,490,Conversation log
45,ChatGPT,1087,0,1087,Conversation log
118,GPT-4,417,276,693,Conversation log
120.5,ChatGPT,1360,343,1703,API log
187,GPT-4,1011,0,1011,API log
"""


def test_burstgpt_skips_failed_requests(tmp_path: Path) -> None:
    w = read_trace(write(tmp_path, "BurstGPT_1.csv", BURST_SAMPLE))
    assert w.arrival_s.tolist() == [0.0, 113.0, 115.5]
    assert w.prompt_tokens.tolist() == [472, 417, 1360]
    assert w.output_tokens.tolist() == [18, 276, 343]
    assert w.metadata["format"] == "burstgpt"
    assert w.metadata["rows"] == 5
    assert w.metadata["skipped"] == {"failed_requests": 2, "other_models": 0}
    assert w.metadata["start"] == "5"
    assert w.metadata["start_s"] == 5.0


def test_burstgpt_model_filter(tmp_path: Path) -> None:
    path = write(tmp_path, "BurstGPT_1.csv", BURST_SAMPLE)
    w = read_trace(path, model="gpt-4")
    assert w.prompt_tokens.tolist() == [417]
    assert w.metadata["skipped"] == {"failed_requests": 1, "other_models": 3}
    with pytest.raises(
        TraceFormatError,
        match=r"no rows with Model 'Claude'; models in the "
        r"file: \['ChatGPT', 'GPT-4'\]",
    ):
        read_trace(path, model="Claude")


def test_mooncake_jsonl(tmp_path: Path) -> None:
    lines = [
        {"timestamp": 27482, "input_length": 6955, "output_length": 52, "hash_ids": [46, 47]},
        {"timestamp": 10535, "input_length": 672, "output_length": 26, "hash_ids": [46]},
        {"timestamp": 30000.0, "input_length": 655.0, "output_length": 1},
    ]
    text = "\n".join(json.dumps(x) for x in lines) + "\n\n"
    w = read_trace(write(tmp_path, "mooncake_trace.jsonl", text))
    assert w.arrival_s.tolist() == pytest.approx([0.0, 16.947, 19.465])
    assert w.prompt_tokens.tolist() == [672, 6955, 655]
    assert w.output_tokens.tolist() == [26, 52, 1]
    assert w.metadata["format"] == "mooncake"
    assert w.metadata["start"] == 10535
    assert w.metadata["start_s"] == pytest.approx(10.535)


def test_plain_csv_with_extra_column_in_any_order(tmp_path: Path) -> None:
    text = "output_tokens,arrival_s,note,prompt_tokens\n5,10.5,x,100\n6,12,y,200\n"
    w = read_trace(write(tmp_path, "plain.csv", text))
    assert w.arrival_s.tolist() == [0.0, 1.5]
    assert w.prompt_tokens.tolist() == [100, 200]
    assert w.output_tokens.tolist() == [5, 6]
    assert w.metadata["format"] == "plain"


# --------------------------------------------------------------------------------- error messages


def azure_rows(n: int) -> str:
    return "".join(f"2023-11-16 18:17:{i:02d}.9799600,{100 + i},{10 + i}\n" for i in range(n))


MALFORMED: list[tuple[str, str | bytes, str]] = [
    ("empty.csv", "", r"^empty\.csv: empty file; expected a header line or JSON lines$"),
    ("blank.csv", "\n  \n\n", r"^blank\.csv: empty file"),
    (
        "t.csv",
        "a,b,c\n1,2,3\n",
        r"^t\.csv line 1: unknown header 'a,b,c'; known formats: Azure LLM inference "
        r"2023/2024 CSV \(TIMESTAMP,ContextTokens,GeneratedTokens\); BurstGPT CSV .*; plain CSV "
        r"\(arrival_s,prompt_tokens,output_tokens\); Mooncake JSON lines",
    ),
    (
        "t.csv",
        "TIMESTAMP,ContextTokens\n2023-11-16 18:00:00,1\n",
        r"^t\.csv line 1: header looks like Azure LLM inference 2023/2024 CSV .* but is missing "
        r"column\(s\) GeneratedTokens; got 'TIMESTAMP,ContextTokens'$",
    ),
    (
        "t.csv",
        f"{AZURE_HEADER}\n{azure_rows(1)}2023-11-16 18:00:00.0,5\n",
        r"^t\.csv line 3: expected 3 comma-separated columns like the header, got 2$",
    ),
    (
        "AzureLLMInferenceTrace_conv.csv",
        f"{AZURE_HEADER}\n{azure_rows(15)}2023-11-16 18:18:00.0,abc,5\n",
        r"^AzureLLMInferenceTrace_conv\.csv line 17, field ContextTokens: expected a "
        r"non-negative integer, got 'abc'$",
    ),
    (
        "t.csv",
        f"{AZURE_HEADER}\n2023-11-16 18:00:00.0,-5,5\n",
        r"^t\.csv line 2, field ContextTokens: expected a non-negative integer, got '-5'$",
    ),
    (
        "t.csv",
        f"{AZURE_HEADER}\n2023-11-16 18:00:00.0,12.5,5\n",
        r"^t\.csv line 2, field ContextTokens: expected a non-negative integer, got '12\.5'$",
    ),
    (
        "t.csv",
        f"{AZURE_HEADER}\n{azure_rows(2)}2023-11-16 18:00:00.0,0,5\n",
        r"^t\.csv line 4, field ContextTokens: expected an integer >= 1, got '0'$",
    ),
    (
        "t.csv",
        f"{AZURE_HEADER}\n2023-11-16 18:00:00.0,5,\n",
        r"^t\.csv line 2, field GeneratedTokens: expected a non-negative integer, got ''$",
    ),
    (
        "t.csv",
        f"{AZURE_HEADER}\nyesterday,5,5\n",
        r"^t\.csv line 2, field TIMESTAMP: expected a date-time like '2023-11-16 "
        r"18:17:03\.9799600' \(optionally \+HH:MM\), got 'yesterday'$",
    ),
    (
        "t.csv",
        f"{AZURE_HEADER}\n2023-13-45 18:00:00.0,5,5\n",
        r"^t\.csv line 2, field TIMESTAMP: expected a valid calendar date-time, "
        r"got '2023-13-45 18:00:00\.0'$",
    ),
    ("t.csv", f"{AZURE_HEADER}\n", r"^t\.csv: contains no requests \(only a header\)$"),
    (
        "t.csv",
        f"{BURST_HEADER}\n5,ChatGPT,1,1,2,x\nsoon,ChatGPT,1,1,2,x\n",
        r"^t\.csv line 3, field Timestamp: expected a number of seconds, got 'soon'$",
    ),
    (
        "t.csv",
        f"{BURST_HEADER}\nnan,ChatGPT,1,1,2,x\n",
        r"^t\.csv line 2, field Timestamp: expected a finite number of seconds, got 'nan'$",
    ),
    (
        "t.csv",
        f"{BURST_HEADER}\n5,ChatGPT,1,0,1,x\n",
        r"^t\.csv: no requests left after filtering \(skipped: \{'failed_requests': 1, "
        r"'other_models': 0\}\)$",
    ),
    (
        "t.csv",
        "arrival_s,prompt_tokens,output_tokens\n0.5,10,0\n",
        r"^t\.csv line 2, field output_tokens: expected an integer >= 1, got '0'$",
    ),
    (
        "m.jsonl",
        '{"timestamp": 0, "input_length": 5, "output_length": 5}\n{"timestamp": 1, "input_\n',
        r"^m\.jsonl line 2: expected a JSON object, got invalid JSON at column 18 \(Unterminated "
        r"string starting at\)$",
    ),
    (
        "m.jsonl",
        '{"timestamp": 0, "input_length": 5}\n',
        r"^m\.jsonl line 1: missing key\(s\) output_length for Mooncake JSON lines .*; known "
        r"formats: ",
    ),
    (
        "m.jsonl",
        '{"timestamp": 0, "input_length": 5, "output_length": 5}\n[1, 2]\n',
        r"^m\.jsonl line 2: expected a JSON object, got list$",
    ),
    (
        "m.jsonl",
        '{"timestamp": 0, "input_length": "12", "output_length": 5}\n',
        r"^m\.jsonl line 1, field input_length: expected a non-negative integer, got '12'$",
    ),
    (
        "m.jsonl",
        '{"timestamp": 0, "input_length": 12, "output_length": 0}\n',
        r"^m\.jsonl line 1, field output_length: expected an integer >= 1, got 0$",
    ),
    (
        "m.jsonl",
        '{"timestamp": "noon", "input_length": 12, "output_length": 3}\n',
        r"^m\.jsonl line 1, field timestamp: expected a finite number of milliseconds, "
        r"got 'noon'$",
    ),
    (
        "t.csv",
        f"{AZURE_HEADER}\n2023-11-16 18:00:00.0,99999999999999999999,5\n",
        r"^t\.csv line 2, field ContextTokens: expected a token count <= 2147483647, "
        r"got '99999999999999999999'$",
    ),
    (
        "m.jsonl",
        '{"timestamp": 1' + "0" * 400 + ', "input_length": 12, "output_length": 3}\n',
        r"^m\.jsonl line 1, field timestamp: expected a finite number of milliseconds",
    ),
    (
        "m.jsonl",
        '{"timestamp": 1e999, "input_length": 12, "output_length": 3}\n',
        r"^m\.jsonl line 1, field timestamp: expected a finite number of milliseconds, got inf$",
    ),
    ("bin.csv", b"\xff\xfe\x00garbage\n", r"^bin\.csv: not UTF-8 text"),
    (
        "big.csv",
        f"{AZURE_HEADER}\n2023-11-16 18:00:00.0,{'9' * 200_000},5\n",
        r"^big\.csv line 2: not valid CSV \(field larger than field limit",
    ),
]


@pytest.mark.parametrize(("name", "text", "message"), MALFORMED)
def test_malformed_file_message(tmp_path: Path, name: str, text: str | bytes, message: str) -> None:
    path = write(tmp_path, name, text)
    with pytest.raises(TraceFormatError, match=message) as info:
        read_trace(path)
    err = info.value
    assert isinstance(err, ValueError)
    assert err.path == path
    # No csv / json / numpy exception chained into the traceback.
    assert err.__cause__ is None
    assert err.__context__ is None or err.__suppress_context__


def test_error_attributes_name_line_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, "t.csv", f"{AZURE_HEADER}\n{azure_rows(3)}2023-11-16 18:00:00,7,x\n")
    with pytest.raises(TraceFormatError) as info:
        read_trace(path)
    assert (info.value.line, info.value.field) == (5, "GeneratedTokens")


def test_model_filter_only_for_burstgpt(tmp_path: Path) -> None:
    path = write(tmp_path, "t.csv", f"{AZURE_HEADER}\n{azure_rows(2)}")
    with pytest.raises(TraceFormatError, match="only supported for BurstGPT traces"):
        read_trace(path, model="ChatGPT")


def test_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_trace(tmp_path / "nope.csv")


# ------------------------------------------------------------------------------------ transforms


def stream(arrivals: list[float], prompt: list[int] | None = None) -> Workload:
    n = len(arrivals)
    p = prompt if prompt is not None else [100 + i for i in range(n)]
    return Workload(
        np.asarray(arrivals, dtype=np.float64),
        np.asarray(p, dtype=np.int64),
        np.arange(1, n + 1, dtype=np.int64),
        "test",
    )


def test_window_rebases_to_window_start() -> None:
    w = stream([0.0, 1.0, 2.5, 3.0, 4.0, 7.0])
    v = window(w, 2.0, 2.0)  # [2, 4)
    assert v.arrival_s.tolist() == [0.5, 1.0]
    assert v.prompt_tokens.tolist() == [102, 103]
    assert v.metadata["transforms"] == ["window(start_s=2, duration_s=2)"]
    assert len(window(w, 100.0, 5.0)) == 0
    with pytest.raises(ValueError, match="duration_s must be a finite number > 0"):
        window(w, 0.0, 0.0)


def test_time_scaled_replays_faster() -> None:
    w = stream([0.0, 2.0, 6.0])
    assert time_scaled(w, 2.0).arrival_s.tolist() == [0.0, 1.0, 3.0]
    assert time_scaled(w, 0.5).arrival_s.tolist() == [0.0, 4.0, 12.0]
    with pytest.raises(ValueError, match="factor must be a finite number > 0, got -1"):
        time_scaled(w, -1)


def bursty_stream(rng: np.random.Generator) -> Workload:
    """1,000 s at 10 req/s with a 100 s burst at 50 req/s starting at 400 s."""
    base = np.sort(rng.random(10_000) * 1000)
    burst = 400 + np.sort(rng.random(4_000) * 100)
    t = np.sort(np.concatenate([base, burst]))
    n = len(t)
    return Workload(t, rng.integers(1, 4000, n), rng.integers(1, 500, n), "bursty")


@pytest.mark.parametrize("factor", [0.3, 1.0, 2.0, 3.5])
def test_rate_scaled_multiplies_rate_and_keeps_profile(factor: float) -> None:
    w = bursty_stream(np.random.default_rng(7))
    s = rate_scaled(w, factor, np.random.default_rng(8))
    n = len(w)
    assert len(s) == pytest.approx(factor * n, abs=4 * np.sqrt(factor * n) + 1)
    assert np.all(np.diff(s.arrival_s) >= 0)
    assert s.arrival_s[0] >= w.arrival_s[0]
    assert s.arrival_s[-1] <= w.arrival_s[-1]
    # The burst's share of requests is preserved: ~ 9,000 of 14,000 outside, 5,000 inside.
    inside = np.count_nonzero((s.arrival_s >= 400) & (s.arrival_s < 500))
    assert inside / len(s) == pytest.approx(5000 / 14000, abs=0.02)
    # Lengths are copied from the original, pairwise.
    pairs = set(zip(w.prompt_tokens.tolist(), w.output_tokens.tolist(), strict=True))
    assert set(zip(s.prompt_tokens.tolist(), s.output_tokens.tolist(), strict=True)) <= pairs


def test_rate_scaled_is_deterministic_per_seed() -> None:
    w = bursty_stream(np.random.default_rng(1))
    a = rate_scaled(w, 2.5, np.random.default_rng(3))
    b = rate_scaled(w, 2.5, np.random.default_rng(3))
    c = rate_scaled(w, 2.5, np.random.default_rng(4))
    assert np.array_equal(a.arrival_s, b.arrival_s)
    assert np.array_equal(a.prompt_tokens, b.prompt_tokens)
    assert not np.array_equal(a.arrival_s[: len(c)], c.arrival_s[: len(a)])


def test_cap_total_tokens_truncates_prompt_then_output() -> None:
    w = Workload(
        np.array([0.0, 1, 2, 3]),
        np.array([100, 8000, 9000, 3], dtype=np.int64),
        np.array([50, 500, 9000, 3], dtype=np.int64),
        "t",
    )
    c = cap_total_tokens(w, 1000)
    assert c.prompt_tokens.tolist() == [100, 500, 1, 3]
    assert c.output_tokens.tolist() == [50, 500, 999, 3]
    assert c.metadata["capped_requests"] == 2
    with pytest.raises(ValueError, match="max_total_tokens must be an integer >= 2"):
        cap_total_tokens(w, 1)


@needs_traces
def test_real_trace_window_and_cap() -> None:
    w = read_trace(TRACES / "AzureLLMInferenceTrace_code.csv")
    v = window(w, 600.0, 600.0)
    expected = np.count_nonzero((w.arrival_s >= 600) & (w.arrival_s < 1200))
    assert len(v) == expected > 1000
    c = cap_total_tokens(w, 2048)
    total = c.prompt_tokens + c.output_tokens
    assert total.max() <= 2048
    assert c.prompt_tokens.min() >= 1
    assert c.output_tokens.min() >= 1
    assert c.metadata["capped_requests"] == np.count_nonzero(
        w.prompt_tokens + w.output_tokens > 2048
    )
