"""Where the work runs: the Dask client, data shared with every worker, cconv's threads.

Nothing here knows what cluster it talks to: a client the caller made, an
address the caller gave, the default client of the session, or, with none of
those, Dask's local schedulers.
"""
import contextlib
import functools
import os
import threading

import dask

import cconv

__all__ = [
    "cconv_threads",
    "plan_threads",
    "resolve_client",
    "share",
    "show_progress",
    "threads_for_task",
]


def resolve_client(client=None, address=None):
    """The distributed Client to use, or None to run on Dask's local scheduler."""
    if client is not None and address is not None:
        raise ValueError(f"give client or address, not both (got client={client!r}, "
                         f"address={address!r})")
    if client is not None:
        if not (hasattr(client, "scatter") and hasattr(client, "compute")):
            raise TypeError(f"client must be a distributed.Client, got {type(client).__name__}")
        return client
    import distributed

    if address is not None:
        if not isinstance(address, str) or not address.strip():
            raise ValueError(f"address must be a scheduler address such as "
                             f"'tcp://host:8786', got {address!r}")
        try:
            current = distributed.default_client()
            if current.scheduler.address == address:
                return current
        except ValueError:  # no default client yet
            pass
        # Becomes the session's default client, so the lazy arrays returned
        # by predict compute on it too.
        return distributed.Client(address)
    try:
        return distributed.default_client()
    except ValueError:
        return None


def share(client, value):
    """A reference to value that every task can take as an argument.

    With a cluster the value is scattered to every worker once (broadcast), so
    tasks carry only its key; a worker that joins later fetches it from a peer
    the first time a task needs it. Locally it is one key of the graph.
    """
    if client is None:
        return dask.delayed(value, pure=True)
    return client.scatter(value, broadcast=True, hash=True)


@functools.cache  # reads cgroup files; asked by every task
def _available_cpus():
    try:  # affinity mask and cgroup CPU quota, as cconv's own default uses
        from cconv._threads import available_cpus
    except ImportError:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
            else (os.cpu_count() or 1)
    return available_cpus()


def _host_of(address):
    from distributed.comm import get_address_host

    return get_address_host(address)


def _worker_facts(dask_worker):  # client.run passes the worker by this argument name
    return {"host": _host_of(dask_worker.address), "cpus": _available_cpus(),
            "nthreads": dask_worker.state.nthreads}


def plan_threads(client, requested=None):
    """{host: cconv threads per task} so that Dask threads x cconv threads <= cores per host.

    Several workers can share a machine (a LocalCluster always does), so the
    budget is counted per host: its CPUs over the Dask threads of all its
    workers. requested: a fixed count for every task instead.
    """
    if requested is not None:
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
            raise ValueError(f"threads_per_task must be an integer >= 1 or None, "
                             f"got {requested!r}")
        return {"*": requested}
    if client is None:
        return {}
    try:
        facts = client.run(_worker_facts, on_error="ignore")
    # an unreachable worker must not stop the job: the tasks fall back
    except Exception:  # noqa: BLE001
        return {}
    hosts = {}
    for fact in facts.values():
        cpus, threads = hosts.get(fact["host"], (fact["cpus"], 0))
        hosts[fact["host"]] = (min(cpus, fact["cpus"]), threads + fact["nthreads"])
    return {host: max(1, cpus // max(1, threads)) for host, (cpus, threads) in hosts.items()}


def threads_for_task(plan):
    """cconv threads for the task running now, from plan_threads' answer."""
    if "*" in plan:
        return plan["*"]
    try:
        from distributed import get_worker
        worker = get_worker()
    except (ImportError, ValueError):  # Dask's local schedulers
        if dask.config.get("scheduler", None) in ("sync", "synchronous", "single-threaded"):
            return _available_cpus()
        pool = dask.config.get("num_workers", None) or dask.system.CPU_COUNT
        return max(1, _available_cpus() // pool)
    n = plan.get(_host_of(worker.address))
    if n is None:  # a worker that joined after the plan was made
        n = max(1, _available_cpus() // max(1, worker.state.nthreads))
    return n


_lock = threading.Lock()
_active = 0
_saved = None


@contextlib.contextmanager
def cconv_threads(n):
    """cconv.threads(n) for tasks that may run concurrently in one process.

    cconv's thread count is process-wide, and cconv.threads restores the
    previous count on exit; two overlapping tasks would restore each other's
    value mid-run. So the count is set while any task runs and restored when
    the last one leaves.
    """
    global _active, _saved
    with _lock:
        if _active == 0:
            _saved = cconv.get_num_threads()
        _active += 1
        cconv.set_num_threads(n)
    try:
        yield n
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                cconv.set_num_threads(_saved)


def show_progress(client, collections):
    """Compute/persist collections with Dask's own progress bar; returns the persisted ones."""
    if client is not None:
        import distributed

        persisted = client.persist(collections)
        # the bar follows this client's scheduler, which need not be the default one
        distributed.progress(persisted, scheduler=client.scheduler.address)
        return persisted
    from dask.diagnostics import ProgressBar

    with ProgressBar():
        return list(dask.persist(*collections))
