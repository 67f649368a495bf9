"""Counters a dashboard or Prometheus can read, kept by this process.

Counters only grow, gauges go up and down, and a histogram counts
observations into fixed buckets. Label values come from the code (an
error code, a refusal reason), never from a client, so the number of
series stays bounded. `prometheus_text()` renders everything in the
Prometheus text exposition format.
"""

import bisect
import threading

PREFIX = "rtrec_"

# Seconds, for the time from an event's arrival to its push.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

HELP = {
    "events_stored_total": (
        "Events stored, and duplicates acknowledged again, by socket or REST."
    ),
    "errors_total": "Errors answered to sockets, and to REST calls (via=rest).",
    "sockets_open": "WebSocket connections open in this process.",
    "sockets_refused_total": "WebSocket connections refused or closed, by reason.",
    "push_latency_seconds": "Time from an event's arrival to its push.",
    "impressions_dropped_total": "Shown lists dropped because the buffer was full.",
}


class Histogram:
    def __init__(self, buckets):
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)
        self.total = 0.0

    def observe(self, value):
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value

    @property
    def count(self):
        return sum(self.counts)


class Counters:
    def __init__(self):
        self._lock = threading.Lock()
        self._counters = {}
        self._gauges = {}
        self._histograms = {}

    def increment(self, name, amount=1, **labels):
        key = _key(name, labels)
        with self._lock:
            self._counters[key] = self._counters.get(key, 0) + amount

    def adjust(self, name, amount, **labels):
        key = _key(name, labels)
        with self._lock:
            self._gauges[key] = self._gauges.get(key, 0) + amount

    def observe(self, name, value, buckets=LATENCY_BUCKETS):
        with self._lock:
            histogram = self._histograms.get(name)
            if histogram is None:
                histogram = self._histograms[name] = Histogram(buckets)
            histogram.observe(value)

    def value(self, name, **labels):
        """A counter's or gauge's current value (0 if never touched)."""
        key = _key(name, labels)
        with self._lock:
            return self._counters.get(key, self._gauges.get(key, 0))

    def histogram(self, name):
        with self._lock:
            return self._histograms.get(name)

    def reset(self):
        with self._lock:
            self._counters.clear()
            self._gauges.clear()
            self._histograms.clear()

    def prometheus_text(self):
        """Every series, in the Prometheus text exposition format."""
        with self._lock:
            counters = dict(self._counters)
            gauges = dict(self._gauges)
            histograms = {
                name: (h.buckets, list(h.counts), h.total)
                for name, h in self._histograms.items()
            }

        lines = []
        lines += _family(counters, "counter")
        lines += _family(gauges, "gauge")
        for name, (buckets, counts, total) in sorted(histograms.items()):
            lines += _histogram_lines(name, buckets, counts, total)
        return "\n".join(lines) + "\n"


def _key(name, labels):
    return name, tuple(sorted(labels.items()))


def _family(series, kind):
    lines, described = [], set()
    for (name, labels), value in sorted(series.items()):
        if name not in described:
            described.add(name)
            lines += _header(name, kind)
        lines.append(f"{PREFIX}{name}{_labels(labels)} {value}")
    return lines


def _histogram_lines(name, buckets, counts, total):
    lines = _header(name, "histogram")
    running = 0
    for bound, count in zip(buckets, counts, strict=False):
        running += count
        lines.append(f'{PREFIX}{name}_bucket{{le="{bound}"}} {running}')
    lines.append(f'{PREFIX}{name}_bucket{{le="+Inf"}} {sum(counts)}')
    lines.append(f"{PREFIX}{name}_sum {total}")
    lines.append(f"{PREFIX}{name}_count {sum(counts)}")
    return lines


def _header(name, kind):
    text = HELP.get(name, name.replace("_", " "))
    return [f"# HELP {PREFIX}{name} {text}", f"# TYPE {PREFIX}{name} {kind}"]


def _labels(labels):
    if not labels:
        return ""
    pairs = ",".join(f'{k}="{_escaped(v)}"' for k, v in labels)
    return "{" + pairs + "}"


def _escaped(value):
    text = str(value)
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


counters = Counters()
