"""The zoo: name -> torch constructor, input shapes (full and --quick), seeded weights.

Weights are random but realistic: every parameter drawn from a seeded
generator, then BatchNorm statistics set from one training-mode pass over a
random batch, so activations keep unit scale through deep nets (with default
statistics a 50-layer net's outputs would be a near-constant, and an accuracy
check on them meaningless).
"""
import torch

import models_classic as classic
import models_dense as dense
import models_mobile as mobile

from shapes import SHAPES, TRAIN_SHAPES  # noqa: E402  (names and shapes, torch-free)

CONSTRUCTORS = {
    "resnet18": classic.resnet18, "resnet50": classic.resnet50,
    "mobilenet_v2": mobile.mobilenet_v2, "mobilenet_v3_large": mobile.mobilenet_v3_large,
    "efficientnet_b0": mobile.efficientnet_b0, "squeezenet1_1": classic.squeezenet1_1,
    "shufflenet_v2": mobile.shufflenet_v2, "densenet121": classic.densenet121,
    "googlenet": classic.googlenet, "vgg16": classic.vgg16, "unet": dense.UNet,
    "dbnet_mv3": dense.DBNet, "m5_audio": dense.m5,
}
# name -> (constructor, per-sample input shape, --quick input shape, family)
ZOO = {name: (CONSTRUCTORS[name], *SHAPES[name]) for name in SHAPES}

# CIFAR forms for the training-step comparison (32x32, 10 classes)
TRAIN_ZOO = {
    "resnet18_cifar": (lambda: classic.resnet18(classes=10, cifar=True),
                       TRAIN_SHAPES["resnet18_cifar"]),
    "mobilenet_v2_cifar": (lambda: mobile.mobilenet_v2(classes=10, cifar=True),
                           TRAIN_SHAPES["mobilenet_v2_cifar"]),
}


def seeded(model, shape, seed=0, calibrate=True):
    """model with seeded weights and BatchNorm statistics of a random batch, in eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim > 1:   # conv / linear: He-uniform on fan-in
                fan_in = p[0].numel()
                bound = (6.0 / fan_in) ** 0.5
                p.copy_(torch.rand(p.shape, generator=g) * 2 * bound - bound)
            elif name.endswith("weight"):   # norm scales near 1
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
        if calibrate:
            for m in model.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.reset_running_stats()
                    m.momentum = None   # cumulative average: one pass sets the statistics
            model.train()
            model(torch.randn((2, *shape), generator=g))
            for m in model.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.momentum = 0.1
    return model.eval()


def build(name, shape, seed=0):
    """The eval-mode torch model `name` with seeded weights, calibrated at `shape`."""
    ctor = ZOO[name][0] if name in ZOO else TRAIN_ZOO[name][0]
    torch.manual_seed(seed)
    return seeded(ctor(), shape, seed)
