"""The nameko client of `cargo bench --bench rpc_amqp`.

    python client.py <amqp uri> sequential <calls> <warmup>
    python client.py <amqp uri> throughput <in_flight> <warmup_s> <seconds>

Calls `nameko_echo.echo("x")` through a standalone `ClusterRpcProxy`
(nameko 2.14.1, eventlet, publisher confirms on, as nameko always does):

- sequential: one call at a time; prints p50 and p99 latency in ms;
- throughput: keeps <in_flight> calls outstanding with `call_async`
  (a window: wait for the oldest reply, then send one more), counts the
  replies received during <seconds> after <warmup_s>; prints calls/s.

Prints one JSON document on stdout.
"""

import eventlet

eventlet.monkey_patch()

import collections  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402

SERVICE = "nameko_echo"


def percentile(sorted_values, fraction):
    index = min(len(sorted_values) - 1, int(round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


def sequential(service, calls, warmup):
    for _ in range(warmup):
        assert service.echo("x") == "x"
    latencies = []
    for _ in range(calls):
        start = time.perf_counter()
        assert service.echo("x") == "x"
        latencies.append(time.perf_counter() - start)
    latencies.sort()
    return {
        "mode": "sequential",
        "calls": calls,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }


def throughput(service, in_flight, warmup_s, seconds):
    window = collections.deque(service.echo.call_async("x") for _ in range(in_flight))

    def one():
        assert window.popleft().result() == "x"
        window.append(service.echo.call_async("x"))

    end_warmup = time.perf_counter() + warmup_s
    while time.perf_counter() < end_warmup:
        one()
    count = 0
    start = time.perf_counter()
    end = start + seconds
    while time.perf_counter() < end:
        one()
        count += 1
    elapsed = time.perf_counter() - start
    while window:
        window.popleft().result()
    return {
        "mode": "throughput",
        "in_flight": in_flight,
        "calls": count,
        "seconds": elapsed,
        "calls_per_s": count / elapsed,
    }


def main():
    uri, mode = sys.argv[1], sys.argv[2]
    numbers = [float(a) for a in sys.argv[3:]]
    with ClusterRpcProxy({"AMQP_URI": uri}, timeout=60) as proxy:
        service = proxy[SERVICE]
        if mode == "sequential":
            result = sequential(service, int(numbers[0]), int(numbers[1]))
        elif mode == "throughput":
            result = throughput(service, int(numbers[0]), numbers[1], numbers[2])
        else:
            raise SystemExit(f"unknown mode {mode}")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
