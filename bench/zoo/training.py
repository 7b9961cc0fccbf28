"""One training step (forward, softmax cross-entropy, backward, Adam), cconv vs torch.

cconv trains the graph imported from the net's ONNX file with its own fit
step, as cconv.fit does (forward(training=True), the loss of
cconv.train.get_loss("cross_entropy"), backward without input gradients, an
Adam step); torch trains the same model in train mode with torch.optim.Adam.
Both start from the same seeded weights.
"""
import numpy as np

from timing import interleaved


def cconv_step(net, x, y, lr=1e-3):
    """A closure running one cconv training step on (x, y)."""
    import cconv
    from cconv.train import get_loss

    loss = get_loss("cross_entropy")
    opt = cconv.optim.Adam(net, lr=lr)

    def step():
        out = net.forward(x, training=True)
        _, grad = loss(out, y)
        net.backward(grad, input_grads=False)
        opt.step()
    return step


def torch_step(model, x, y, lr=1e-3):
    import torch

    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(xt), yt).backward()
        opt.step()
    return step


def bench_train(name, shape, threads, rounds, import_net, torch_model, batch=64):
    """A row: cconv_ms and torch_ms of one step, or a status saying what failed."""
    import cconv

    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, *shape)).astype(np.float32)
    y = rng.integers(0, 10, batch)
    row = {"case": f"zoo_train_step/{name}/b{batch}", "threads": threads, "status": "ok"}
    fns = {}
    try:
        net = import_net()
        fns["cconv"] = cconv_step(net, x, y)
        with cconv.threads(threads):
            fns["cconv"]()   # a failing backward shows here, not mid-timing
    except Exception as e:  # noqa: BLE001 - any failure is a visible row
        fns.pop("cconv", None)
        row["status"] = f"cconv: {type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"
    if torch_model is not None:
        import torch
        torch.set_num_threads(threads)
        fns["torch"] = torch_step(torch_model(), x, y)
    with cconv.threads(threads):
        for engine, t in interleaved(fns, rounds).items():
            row[f"{engine}_ms"] = t * 1e3
    return row
