"""How many threads each worker's backend gets, so N workers on one host do not oversubscribe it."""

from __future__ import annotations

import dataclasses

from .. import hardware


@dataclasses.dataclass(frozen=True, kw_only=True)
class ThreadPlan:
    """Threads for one worker.

    Attributes:
        cores: the cores this process may use (affinity mask capped by the cgroup CPU quota).
        workers: worker processes sharing them.
        threads: intra-op threads for the backend and the framework; 0 means the backend's own
            default (one worker with every core of the affinity mask).
        shared: other workers share these cores: idle threads should sleep rather than spin.
    """

    cores: int
    workers: int
    threads: int
    shared: bool


def host_cores() -> int:
    """The cores this process may use: its affinity mask capped by the cgroup CPU quota.

    The one count a server sizes its pools from (request threads, batch threads, one worker
    per core), so a pod limited to 2 CPUs on a 64-core node sizes for 2, not 64.
    """
    return hardware.available_cores()


def plan_threads(workers: int = 1, threads: int = 0) -> ThreadPlan:
    """``threads`` when given; else cores // workers; else the pod's CPU limit, else 0."""
    cores = host_cores()
    workers = max(1, int(workers))
    if threads:
        n = int(threads)
    elif workers > 1:
        n = max(1, cores // workers)
    else:
        n = cores if cores < hardware.affinity_cores() else 0
    return ThreadPlan(cores=cores, workers=workers, threads=n, shared=workers > 1)
