"""Process-local counters and histograms, rendered with the database gauges in Prometheus text format."""
from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from typing import Iterable

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{k}="{_escape(str(v))}"' for k, v in pairs)
    return "{" + inner + "}" if inner else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Counter:
    def __init__(self, name: str, help_text: str):
        self.name, self.help = name, help_text
        self._values: dict[tuple, float] = defaultdict(float)
        self._lock = threading.Lock()

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._values[key] += amount

    def value(self, **labels: str) -> float:
        return self._values.get(tuple(sorted(labels.items())), 0.0)

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        with self._lock:
            for key, value in sorted(self._values.items()):
                lines.append(f"{self.name}{_labels(key)} {value:g}")
        return lines


class Histogram:
    def __init__(self, name: str, help_text: str, buckets: tuple[float, ...] = LATENCY_BUCKETS):
        self.name, self.help, self.buckets = name, help_text, buckets
        self._series: dict[tuple, list[float]] = {}
        self._lock = threading.Lock()

    def observe(self, seconds: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        slot = bisect.bisect_left(self.buckets, seconds)  # the smallest bucket holding it; counts add up at render
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = [0.0] * (len(self.buckets) + 3)
            series[slot] += 1
            series[-2] += 1
            series[-1] += seconds

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        with self._lock:
            for key, series in sorted(self._series.items()):
                below = 0.0
                for index, bound in enumerate(self.buckets):
                    below += series[index]
                    lines.append(f"{self.name}_bucket{_labels(key + (('le', f'{bound:g}'),))} {below:g}")
                lines.append(f"{self.name}_bucket{_labels(key + (('le', '+Inf'),))} {series[-2]:g}")
                lines.append(f"{self.name}_count{_labels(key)} {series[-2]:g}")
                lines.append(f"{self.name}_sum{_labels(key)} {series[-1]:g}")
        return lines


HTTP_REQUESTS = Counter("companion_http_requests_total", "HTTP requests served by this process, by method, endpoint and status.")
HTTP_DURATION = Histogram("companion_http_request_duration_seconds", "Time to answer an HTTP request in this process.")
JOB_RUNS = Counter("companion_job_runs_total", "Job attempts finished by this process, by kind and outcome.")

PROCESS_METRICS = (HTTP_REQUESTS, HTTP_DURATION, JOB_RUNS)


def render_gauges(name: str, help_text: str, samples: Iterable[tuple[dict, float]]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
    for labels, value in samples:
        lines.append(f"{name}{_labels(sorted(labels.items()))} {value:g}")
    return lines
