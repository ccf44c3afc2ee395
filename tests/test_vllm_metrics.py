"""vLLM metric names: every spelling maps to one canonical name; buckets match vLLM's."""

from __future__ import annotations

import pytest

from rlscale.metrics import vllm as vm


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        # gauges, old and new names, colon and underscore
        ("vllm:num_requests_running", vm.NUM_REQUESTS_RUNNING),
        ("vllm_num_requests_waiting", vm.NUM_REQUESTS_WAITING),
        ("vllm:kv_cache_usage_perc", vm.KV_CACHE_USAGE_PERC),
        ("vllm:gpu_cache_usage_perc", vm.KV_CACHE_USAGE_PERC),
        ("vllm_gpu_cache_usage_perc", vm.KV_CACHE_USAGE_PERC),
        # counters: declared name, exposed _total name, _created series
        ("vllm:prompt_tokens", vm.PROMPT_TOKENS_TOTAL),
        ("vllm:prompt_tokens_total", vm.PROMPT_TOKENS_TOTAL),
        ("vllm_generation_tokens_total", vm.GENERATION_TOKENS_TOTAL),
        ("vllm:num_preemptions_total", vm.NUM_PREEMPTIONS_TOTAL),
        ("vllm:num_preemptions", vm.NUM_PREEMPTIONS_TOTAL),
        ("vllm:request_success_total", vm.REQUEST_SUCCESS_TOTAL),
        ("vllm:request_success_created", vm.REQUEST_SUCCESS_TOTAL),
        # histograms: base, _bucket, _sum, _count; old ITL name
        ("vllm:time_to_first_token_seconds", vm.TIME_TO_FIRST_TOKEN_SECONDS),
        ("vllm:time_to_first_token_seconds_bucket", vm.TIME_TO_FIRST_TOKEN_SECONDS),
        ("vllm:inter_token_latency_seconds_sum", vm.INTER_TOKEN_LATENCY_SECONDS),
        ("vllm:time_per_output_token_seconds", vm.INTER_TOKEN_LATENCY_SECONDS),
        ("vllm_time_per_output_token_seconds_count", vm.INTER_TOKEN_LATENCY_SECONDS),
        ("vllm:e2e_request_latency_seconds_count", vm.E2E_REQUEST_LATENCY_SECONDS),
        ("vllm_request_queue_time_seconds_bucket", vm.REQUEST_QUEUE_TIME_SECONDS),
        # label sets and whitespace are ignored
        ('vllm:e2e_request_latency_seconds_bucket{le="0.5"}', vm.E2E_REQUEST_LATENCY_SECONDS),
        ("  vllm:num_requests_running ", vm.NUM_REQUESTS_RUNNING),
    ],
)  # fmt: skip
def test_canonical_name(spelling: str, canonical: str) -> None:
    assert vm.canonical_metric_name(spelling) == canonical


@pytest.mark.parametrize(
    "name",
    [
        "",
        "foo",
        "vllm:unknown_metric",
        "vllm:num_requests_running_total",  # a gauge has no _total series
        "vllm:num_requests_waiting_bucket",  # ...nor buckets
        "vllm:prompt_tokens_bucket",  # a counter has no buckets
        "vllm:time_to_first_token_seconds_total",  # a histogram has no _total
        "vllm:request_time_per_output_token_seconds",  # per-request TPOT: a different metric
        "sglang:num_requests_running",
    ],
)
def test_unknown_names_map_to_none(name: str) -> None:
    assert vm.canonical_metric_name(name) is None


def test_canonical_names_are_fixed_points() -> None:
    for name, spec in vm.METRICS.items():
        assert spec.name == name
        assert vm.canonical_metric_name(name) == name
        for alias in spec.aliases:
            assert vm.canonical_metric_name(alias) == name


def test_brief_metric_set_is_covered() -> None:
    expected = {
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
        "vllm:num_preemptions_total",
        "vllm:request_success_total",
        "vllm:time_to_first_token_seconds",
        "vllm:inter_token_latency_seconds",
        "vllm:e2e_request_latency_seconds",
        "vllm:request_queue_time_seconds",
    }
    assert set(vm.METRICS) == expected


def test_kinds() -> None:
    kinds = {name: spec.kind for name, spec in vm.METRICS.items()}
    assert kinds[vm.KV_CACHE_USAGE_PERC] == "gauge"
    assert kinds[vm.PROMPT_TOKENS_TOTAL] == "counter"
    assert all(name.endswith("_total") for name, k in kinds.items() if k == "counter")
    assert all(name.endswith("_seconds") for name, k in kinds.items() if k == "histogram")


def test_buckets_match_vllm_v1_loggers() -> None:
    assert vm.TTFT_BUCKETS_S == (
        0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
        10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
    )  # fmt: skip
    assert vm.ITL_BUCKETS_S == (
        0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
        20.0, 40.0, 80.0,
    )  # fmt: skip
    assert vm.E2E_BUCKETS_S == vm.QUEUE_BUCKETS_S == vm.QUEUE_TIME_BUCKETS_S == (
        0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
        240.0, 480.0, 960.0, 1920.0, 7680.0,
    )  # fmt: skip


def test_buckets_by_any_spelling() -> None:
    for spec in vm.METRICS.values():
        if spec.kind == "histogram":
            edges = vm.buckets_for(spec.name + "_bucket")
            assert edges == spec.buckets
            assert list(edges) == sorted(set(edges)), spec.name
            assert all(isinstance(e, float) for e in edges)
    assert vm.buckets_for("vllm_time_per_output_token_seconds") == vm.ITL_BUCKETS_S
    with pytest.raises(KeyError):
        vm.buckets_for(vm.NUM_REQUESTS_RUNNING)
    with pytest.raises(KeyError):
        vm.buckets_for("nope")
