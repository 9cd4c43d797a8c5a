"""The server-agnostic serving layer every plugin (TorchServe, KServe, TF Serving) and the interposer use.

It knows no server. A plugin is its protocol codec and its lifecycle over these pieces:

    settings   a config section (YAML, flags, environment) -> plugin keys + ``BoostConfig``;
               the boost flags every server CLI adds, one spelling each (the field name)
    inputs     input specs from ``NAME:SHAPE[:DTYPE]`` strings or mappings, as ``TensorSpec``;
               fresh random example feeds for them
    threads    the cores this process may use and how many threads each worker's backend
               gets (cgroup-aware)
    status     any exception -> (HTTP status, gRPC code, message), the same on every server
    telemetry  the bridge from core metrics to a server's metrics system, and Prometheus text
    heap       after models load: the collector's full passes off the request path
"""

from __future__ import annotations

from .heap import settle_heap
from .inputs import example_feeds, nested_shape, parse_specs, read_examples
from .settings import Section, add_boost_flags, boost_config, boost_flags, split_section
from .status import Status, status_of
from .telemetry import MetricsBridge, prometheus_text
from .threads import ThreadPlan, host_cores, plan_threads

__all__ = ["Section", "split_section", "boost_config", "add_boost_flags", "boost_flags",
           "parse_specs", "example_feeds", "nested_shape", "read_examples", "ThreadPlan", "plan_threads",
           "host_cores", "Status", "status_of", "MetricsBridge", "prometheus_text", "settle_heap"]
