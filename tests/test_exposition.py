"""A pod's /metrics text: what the simulator renders, the controller parses back unchanged."""

from __future__ import annotations

import re

import numpy as np
import pytest
from simfixtures import make_profile, one_pool, poisson_workload

from rlscale.metrics import (
    ClusterSnapshot,
    MetricsParseError,
    PodSample,
    Spelling,
    parse_pod_metrics,
    render_pod_metrics,
)
from rlscale.metrics.vllm import ITL_BUCKETS_S, TTFT_BUCKETS_S
from rlscale.sim.cluster import Cluster
from rlscale.sim.export import cluster_snapshot

SPELLINGS: tuple[Spelling, ...] = ("new", "old", "underscore")


@pytest.fixture(scope="module")
def snapshot() -> ClusterSnapshot:
    """A two-replica pool mid-run: requests running and waiting, every histogram filled."""
    workload = poisson_workload(12.0, 600, seed=5)
    cluster = Cluster(one_pool(make_profile(), 2), workload, np.random.default_rng(1))
    cluster.run_until(35.0)
    return cluster_snapshot(cluster)


@pytest.fixture
def sample(snapshot: ClusterSnapshot) -> PodSample:
    return snapshot.pods[0]


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_round_trip_of_simulated_pods(snapshot: ClusterSnapshot, spelling: Spelling) -> None:
    assert any(p.num_requests_running for p in snapshot.pods), "fixture should be busy"
    for original in snapshot.pods:
        text = render_pod_metrics(original, model_name="llama-3-8b", spelling=spelling)
        parsed = parse_pod_metrics(text, pod=original.pod, pool=original.pool)
        assert parsed == original, f"{spelling}: parse(render(x)) != x for pod {original.pod}"
        assert parsed.kv_cache_usage_perc == pytest.approx(original.kv_cache_usage_perc)


def test_rendered_text_looks_like_vllm(sample: PodSample) -> None:
    text = render_pod_metrics(sample, model_name="llama-3-8b")
    assert "# HELP vllm:num_requests_running " in text
    assert "# TYPE vllm:prompt_tokens_total counter" in text
    assert "# TYPE vllm:time_to_first_token_seconds histogram" in text
    assert (f'vllm:request_success_total{{engine="0",finished_reason="stop",'
            f'model_name="llama-3-8b"}} {float(sample.request_success_total)}') in text
    les = re.findall(r'vllm:time_to_first_token_seconds_bucket\{engine="0",le="([^"]+)"', text)
    assert les == [*(str(e) for e in TTFT_BUCKETS_S), "+Inf"]
    assert (f'vllm:time_to_first_token_seconds_count{{engine="0",model_name="llama-3-8b"}} '
            f"{float(sample.time_to_first_token_seconds.count)}") in text
    assert "vllm:inter_token_latency_seconds_sum" in text
    assert "gpu_cache_usage_perc" not in text
    assert "time_per_output_token" not in text


def test_old_and_underscore_spellings(sample: PodSample) -> None:
    old = render_pod_metrics(sample, model_name="m", spelling="old")
    assert "vllm:gpu_cache_usage_perc{" in old
    assert "vllm:time_per_output_token_seconds_bucket{" in old
    assert "kv_cache_usage_perc" not in old
    assert "inter_token_latency" not in old
    underscore = render_pod_metrics(sample, model_name="m", spelling="underscore")
    assert "vllm:" not in underscore
    assert "vllm_kv_cache_usage_perc{" in underscore
    assert "vllm_request_success_total{" in underscore


def test_label_sets_are_summed_and_kv_usage_averaged(sample: PodSample) -> None:
    """Two served models (or engines) on one pod: counts add up, the KV fraction is a mean."""
    lines: list[str] = []
    for line in render_pod_metrics(sample, model_name="a").splitlines():
        lines.append(line)
        if line and not line.startswith("#"):
            lines.append(line.replace('model_name="a"', 'model_name="b"'))
    twice = re.sub(r'(vllm:kv_cache_usage_perc\{engine="0",model_name="b"\}) \S+', r"\1 0.0",
                   "\n".join(lines) + "\n")
    parsed = parse_pod_metrics(twice, pod=sample.pod, pool=sample.pool)
    assert parsed.num_requests_running == 2 * sample.num_requests_running
    assert parsed.request_success_total == 2 * sample.request_success_total
    assert parsed.generation_tokens_total == 2 * sample.generation_tokens_total
    assert parsed.kv_cache_usage_perc == pytest.approx(sample.kv_cache_usage_perc / 2)
    ttft = parsed.time_to_first_token_seconds
    assert ttft.cumulative == tuple(2 * c for c in sample.time_to_first_token_seconds.cumulative)
    assert ttft.sum == pytest.approx(2 * sample.time_to_first_token_seconds.sum)


def test_a_metric_served_under_both_names_is_read_once(sample: PodSample) -> None:
    """vLLM v0.9-v0.11 serve the deprecated name next to the new one: do not double count."""
    new = render_pod_metrics(sample, model_name="m")
    old = render_pod_metrics(sample, model_name="m", spelling="old")
    deprecated = [line for line in old.splitlines()
                  if "time_per_output_token" in line or "gpu_cache_usage" in line]
    parsed = parse_pod_metrics(new + "\n".join(deprecated) + "\n", pod="p", pool="q")
    assert parsed.inter_token_latency_seconds == sample.inter_token_latency_seconds
    assert parsed.kv_cache_usage_perc == sample.kv_cache_usage_perc


REAL_PAGE = """\
# HELP python_gc_objects_collected_total Objects collected during gc
# TYPE python_gc_objects_collected_total counter
python_gc_objects_collected_total{generation="0"} 12043.0
# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 1.2e+09
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="meta-llama/Llama-3.1-8B"} 7.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="meta-llama/Llama-3.1-8B"} 2.0
# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{engine="0",model_name="meta-llama/Llama-3.1-8B"} 0.25
# HELP vllm:prompt_tokens_total Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="meta-llama/Llama-3.1-8B"} 5000.0
vllm:prompt_tokens_created{engine="0",model_name="meta-llama/Llama-3.1-8B"} 1.7e+09
# HELP vllm:generation_tokens_total Number of generation tokens processed.
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{engine="0",model_name="meta-llama/Llama-3.1-8B"} 900.0
# HELP vllm:num_preemptions_total Cumulative number of preemption from the engine.
# TYPE vllm:num_preemptions_total counter
vllm:num_preemptions_total{engine="0",model_name="meta-llama/Llama-3.1-8B"} 1.0
# HELP vllm:request_success_total Count of successfully processed requests.
# TYPE vllm:request_success_total counter
vllm:request_success_total{engine="0",finished_reason="stop",model_name="meta-llama/Llama-3.1-8B"} 8.0
vllm:request_success_total{engine="0",finished_reason="length",model_name="meta-llama/Llama-3.1-8B"} 2.0
vllm:request_success_total{engine="0",finished_reason="abort",model_name="meta-llama/Llama-3.1-8B"} 0.0
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.1",model_name="meta-llama/Llama-3.1-8B"} 3.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="1.0",model_name="meta-llama/Llama-3.1-8B"} 9.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="meta-llama/Llama-3.1-8B"} 10.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="meta-llama/Llama-3.1-8B"} 10.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="meta-llama/Llama-3.1-8B"} 4.5
vllm:time_to_first_token_seconds_created{engine="0",model_name="meta-llama/Llama-3.1-8B"} 1.7e+09
# HELP vllm:time_per_output_token_seconds Histogram of time per output token in seconds.
# TYPE vllm:time_per_output_token_seconds histogram
vllm:time_per_output_token_seconds_bucket{engine="0",le="0.05",model_name="meta-llama/Llama-3.1-8B"} 800.0
vllm:time_per_output_token_seconds_bucket{engine="0",le="+Inf",model_name="meta-llama/Llama-3.1-8B"} 890.0
vllm:time_per_output_token_seconds_count{engine="0",model_name="meta-llama/Llama-3.1-8B"} 890.0
vllm:time_per_output_token_seconds_sum{engine="0",model_name="meta-llama/Llama-3.1-8B"} 30.25
# HELP vllm:e2e_request_latency_seconds Histogram of end to end request latency in seconds.
# TYPE vllm:e2e_request_latency_seconds histogram
vllm:e2e_request_latency_seconds_bucket{engine="0",le="5.0",model_name="meta-llama/Llama-3.1-8B"} 10.0
vllm:e2e_request_latency_seconds_bucket{engine="0",le="+Inf",model_name="meta-llama/Llama-3.1-8B"} 10.0
vllm:e2e_request_latency_seconds_count{engine="0",model_name="meta-llama/Llama-3.1-8B"} 10.0
vllm:e2e_request_latency_seconds_sum{engine="0",model_name="meta-llama/Llama-3.1-8B"} 20.0
# HELP vllm:request_queue_time_seconds Histogram of time spent in WAITING phase for request.
# TYPE vllm:request_queue_time_seconds histogram
vllm:request_queue_time_seconds_bucket{engine="0",le="5.0",model_name="meta-llama/Llama-3.1-8B"} 10.0
vllm:request_queue_time_seconds_bucket{engine="0",le="+Inf",model_name="meta-llama/Llama-3.1-8B"} 10.0
vllm:request_queue_time_seconds_count{engine="0",model_name="meta-llama/Llama-3.1-8B"} 10.0
vllm:request_queue_time_seconds_sum{engine="0",model_name="meta-llama/Llama-3.1-8B"} 1.0
# HELP vllm:num_requests_swapped Number of requests swapped to CPU.
# TYPE vllm:num_requests_swapped gauge
vllm:num_requests_swapped{engine="0",model_name="meta-llama/Llama-3.1-8B"} 0.0
"""  # noqa: E501  (vLLM's lines are long)


def test_a_hand_written_vllm_page_with_other_metrics_and_old_names() -> None:
    parsed = parse_pod_metrics(REAL_PAGE, pod="vllm-0", pool="llama")
    assert (parsed.pod, parsed.pool) == ("vllm-0", "llama")
    assert (parsed.num_requests_running, parsed.num_requests_waiting) == (7, 2)
    assert parsed.kv_cache_usage_perc == 0.25
    assert (parsed.prompt_tokens_total, parsed.generation_tokens_total) == (5000, 900)
    assert (parsed.num_preemptions_total, parsed.request_success_total) == (1, 10)
    assert parsed.time_to_first_token_seconds.edges == (0.1, 1.0)
    assert parsed.time_to_first_token_seconds.cumulative == (3, 9, 10)
    assert parsed.time_to_first_token_seconds.sum == 4.5
    assert parsed.inter_token_latency_seconds.cumulative == (800, 890)
    assert parsed.inter_token_latency_seconds.edges == (0.05,)


def _without(text: str, fragment: str) -> str:
    return "\n".join(line for line in text.splitlines() if fragment not in line) + "\n"


def _replace_value(text: str, series: str, value: str) -> str:
    return re.sub(rf"^({re.escape(series)}\{{[^}}]*\}}) \S+$", rf"\g<1> {value}", text,
                  count=1, flags=re.MULTILINE)


@pytest.mark.parametrize(("mangle", "message"), [
    (lambda t: _without(t, "kv_cache_usage_perc"),
     "vllm:kv_cache_usage_perc missing (also looked for vllm:gpu_cache_usage_perc, "
     "vllm_kv_cache_usage_perc, vllm_gpu_cache_usage_perc)"),
    (lambda t: _without(t, "vllm:request_success_total"),
     "vllm:request_success_total missing (also looked for vllm_request_success_total)"),
    (lambda t: _without(t, "inter_token_latency"),
     "vllm:inter_token_latency_seconds missing (also looked for "
     "vllm:time_per_output_token_seconds, vllm_inter_token_latency_seconds, "
     "vllm_time_per_output_token_seconds)"),
    (lambda t: "<html><body>502 Bad Gateway</body></html>\n",
     "not Prometheus text exposition format"),
    (lambda t: "hello world\n", "not Prometheus text exposition format"),
    (lambda t: "", "vllm:num_requests_running missing"),
    (lambda t: _replace_value(t, "vllm:prompt_tokens_total", "NaN"),
     "vllm:prompt_tokens_total{engine=\"0\",model_name=\"m\"} is nan (expected a finite count)"),
    (lambda t: _replace_value(t, "vllm:kv_cache_usage_perc", "NaN"),
     "vllm:kv_cache_usage_perc{engine=\"0\",model_name=\"m\"} is nan "
     "(expected a fraction in [0, 1])"),
    (lambda t: _replace_value(t, "vllm:kv_cache_usage_perc", "57.0"),
     "is 57.0 (expected a fraction in [0, 1])"),
    (lambda t: _replace_value(t, "vllm:num_requests_waiting", "-1"),
     "vllm:num_requests_waiting{engine=\"0\",model_name=\"m\"} is -1.0 "
     "(expected a non-negative integer count)"),
    (lambda t: _replace_value(t, "vllm:time_to_first_token_seconds_sum", "NaN"),
     "vllm:time_to_first_token_seconds_sum{engine=\"0\",model_name=\"m\"} is nan"),
    (lambda t: _without(t, "time_to_first_token_seconds_bucket{engine=\"0\",le=\"+Inf\""),
     'vllm:time_to_first_token_seconds_bucket{engine="0",model_name="m"} has no le="+Inf" '
     "bucket"),
    (lambda t: _without(t, "vllm:e2e_request_latency_seconds_sum"),
     'vllm:e2e_request_latency_seconds_sum{engine="0",model_name="m"} missing'),
    (lambda t: _without(t, "vllm:request_queue_time_seconds_bucket"),
     "vllm:request_queue_time_seconds has no vllm:request_queue_time_seconds_bucket series"),
    (lambda t: _replace_value(t, "vllm:inter_token_latency_seconds_count", "1.0"),
     'vllm:inter_token_latency_seconds_count{engine="0",model_name="m"} is 1.0 but the '
     'le="+Inf" bucket is'),
    (lambda t: _replace_value(t, "vllm:time_to_first_token_seconds_bucket", "1e9"),
     'vllm:time_to_first_token_seconds_bucket{engine="0",model_name="m"}: cumulative bucket '
     "counts decrease"),
])  # fmt: skip
def test_parse_errors_name_the_metric_and_the_problem(sample: PodSample, mangle: object,
                                                      message: str) -> None:
    text = render_pod_metrics(sample, model_name="m")
    assert callable(mangle)
    with pytest.raises(MetricsParseError) as error:
        parse_pod_metrics(mangle(text), pod="p", pool="q")
    assert message in str(error.value)
    assert isinstance(error.value, ValueError)


def test_itl_buckets_are_vllms(sample: PodSample) -> None:
    text = render_pod_metrics(sample, model_name="m", spelling="underscore")
    les = re.findall(r'vllm_inter_token_latency_seconds_bucket\{engine="0",le="([^"]+)"', text)
    assert [float(le) for le in les[:-1]] == list(ITL_BUCKETS_S)
