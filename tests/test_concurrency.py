"""Threads: the kernels release the GIL; one net serves several threads at once.

A stress test bounded in time (STRESS_SECONDS per scenario): several Python
threads run inference on one shared net (batch sizes varied so that the
per-shape planned runners are made, evicted and rebuilt concurrently), while
another thread trains a different net and yet another flips
cconv.set_num_threads. Every result must equal the serial one.
"""
import threading
import time

import numpy as np
import pytest

import cconv
from cconv import nn, ops

STRESS_SECONDS = 1.0
N_THREADS = 4


def _net(seed=0):
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding="same", groups=2), nn.ReLU(), nn.Dropout(0.3),
        nn.GlobalAvgPool(), nn.Linear(6, 5)).build((1, 8, 8), seed=seed)


def _run_threads(workers, seconds):
    """Run each worker(stop_event) in its own thread; re-raise the first error."""
    stop, errors = threading.Event(), []

    def wrap(fn):
        def run():
            try:
                fn(stop)
            except BaseException as exc:   # noqa: BLE001 (reported below)
                errors.append(exc)
                stop.set()
        return run

    threads = [threading.Thread(target=wrap(w)) for w in workers]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive(), "a worker thread hangs"
    if errors:
        raise errors[0]


def test_kernels_release_the_gil():
    """While one thread is inside a long conv2d, another thread keeps running Python."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 32, 48, 48)).astype(np.float32)
    w = rng.standard_normal((32, 32, 3, 3)).astype(np.float32)
    counter, done = [0], threading.Event()

    def spin():
        while not done.is_set():
            counter[0] += 1

    with cconv.threads(1):
        ops.conv2d(x, w)   # warm up
        t0 = time.perf_counter()
        ops.conv2d(x, w)
        alone = time.perf_counter() - t0
        spinner = threading.Thread(target=spin)
        spinner.start()
        try:
            time.sleep(0.01)
            calls = 0
            before = counter[0]
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < max(0.3, 3 * alone):
                ops.conv2d(x, w)
                calls += 1
            during = counter[0] - before
        finally:
            done.set()
            spinner.join()
    # With the GIL held through each call the spinner would run only between
    # calls (a few switch intervals per call); released, it runs all along.
    assert calls >= 1 and during > 2000 * calls, (during, calls)


def test_parallel_conv_calls_equal_serial_ones():
    rng = np.random.default_rng(1)
    cases = [(rng.standard_normal((2, 3, 12, 12)).astype(np.float32),
              rng.standard_normal((4, 3, 3, 3)).astype(np.float32), s) for s in (1, 2, 1, 2)]
    want = [ops.conv2d(x, w, stride=s, padding=1) for x, w, s in cases]
    count = [0]

    def worker(i):
        def run(stop):
            while not stop.is_set():
                x, w, s = cases[i]
                np.testing.assert_array_equal(ops.conv2d(x, w, stride=s, padding=1), want[i])
                count[0] += 1
        return run

    _run_threads([worker(i) for i in range(len(cases))], 0.5)
    assert count[0] > len(cases)


def test_shared_net_inference_in_threads_equals_serial():
    net = _net()
    rng = np.random.default_rng(2)
    # more batch sizes than the graph keeps planned runners for: they are made,
    # evicted and rebuilt while other threads use them
    inputs = [rng.standard_normal((b, 1, 8, 8)).astype(np.float32)
              for b in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)]
    want = [net(x).copy() for x in inputs]
    params_before = {k: v.copy() for k, v in net.named_parameters()}
    calls = [0] * N_THREADS

    def worker(k):
        def run(stop):
            order = np.random.default_rng(k)
            while not stop.is_set():
                i = int(order.integers(len(inputs)))
                np.testing.assert_array_equal(net(inputs[i]), want[i])
                calls[k] += 1
        return run

    _run_threads([worker(k) for k in range(N_THREADS)], STRESS_SECONDS)
    assert min(calls) > 10, calls
    for name, before in params_before.items():   # inference changed nothing
        np.testing.assert_array_equal(dict(net.named_parameters())[name], before)


def _train(seed, steps=30):
    net = _net(seed)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((64, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 5, 64)
    opt = cconv.optim.Adam(net, lr=1e-2)
    cconv.fit(net, x, y, epochs=steps // 4, batch_size=16, optimizer=opt, seed=seed,
              progress=False)
    return {k: v.copy() for k, v in net.named_parameters()}


def test_training_and_inference_on_other_nets_in_parallel_and_thread_count_flips():
    """Train net A while threads infer on net B and one thread flips set_num_threads."""
    want_trained = _train(3)
    infer_net = _net(1)
    rng = np.random.default_rng(4)
    xs = [rng.standard_normal((b, 1, 8, 8)).astype(np.float32) for b in (1, 4, 16)]
    want = [infer_net(x).copy() for x in xs]
    got_trained, flips, calls = {}, [0], [0]

    def trainer(stop):
        got_trained.update(_train(3))

    def inferer(stop):
        while not stop.is_set():
            for x, w in zip(xs, want):
                np.testing.assert_allclose(infer_net(x), w, rtol=1e-5, atol=1e-6)
                calls[0] += 1

    def flipper(stop):
        while not stop.is_set():
            cconv.set_num_threads(1 + flips[0] % 2)
            flips[0] += 1
            time.sleep(0.001)

    _run_threads([trainer, inferer, inferer, flipper], STRESS_SECONDS)
    deadline = time.monotonic() + 60
    while not got_trained and time.monotonic() < deadline:   # the trainer may outlast the stress
        time.sleep(0.05)
    assert got_trained and calls[0] > 10 and flips[0] > 10
    for name, w in want_trained.items():
        np.testing.assert_allclose(got_trained[name], w, rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("n", [1, 2])
def test_set_num_threads_from_another_thread_never_corrupts_a_run(n):
    """The count is process-wide by design, but a change never breaks a call in flight."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 8, 20, 20))
    w = rng.standard_normal((8, 8, 3, 3))
    want = ops.conv2d(x, w, padding=1)
    results = []

    def run(stop):
        while not stop.is_set():
            results.append(ops.conv2d(x, w, padding=1))

    def flip(stop):
        while not stop.is_set():
            cconv.set_num_threads(n)
            cconv.set_num_threads(3 - n)

    _run_threads([run, flip], 0.5)
    assert results
    for r in results:
        np.testing.assert_allclose(r, want, rtol=1e-12, atol=1e-12)
