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

# name -> (constructor, per-sample input shape, --quick input shape, family)
ZOO = {
    "resnet18": (classic.resnet18, (3, 224, 224), (3, 112, 112), "image"),
    "resnet50": (classic.resnet50, (3, 224, 224), (3, 112, 112), "image"),
    "mobilenet_v2": (mobile.mobilenet_v2, (3, 224, 224), (3, 112, 112), "image"),
    "mobilenet_v3_large": (mobile.mobilenet_v3_large, (3, 224, 224), (3, 112, 112), "image"),
    "efficientnet_b0": (mobile.efficientnet_b0, (3, 224, 224), (3, 112, 112), "image"),
    "squeezenet1_1": (classic.squeezenet1_1, (3, 224, 224), (3, 112, 112), "image"),
    "shufflenet_v2": (mobile.shufflenet_v2, (3, 224, 224), (3, 112, 112), "image"),
    "densenet121": (classic.densenet121, (3, 224, 224), (3, 112, 112), "image"),
    "googlenet": (classic.googlenet, (3, 224, 224), (3, 112, 112), "image"),
    # AdaptiveAvgPool2d(7) exports only where the map divides: 224 in both modes
    "vgg16": (classic.vgg16, (3, 224, 224), (3, 224, 224), "image"),
    "unet": (dense.UNet, (3, 256, 256), (3, 128, 128), "dense"),
    "dbnet_mv3": (dense.DBNet, (3, 640, 640), (3, 320, 320), "dense"),
    "m5_audio": (dense.m5, (1, 16000), (1, 16000), "audio"),
}

# CIFAR forms for the training-step comparison (32x32, 10 classes)
TRAIN_ZOO = {
    "resnet18_cifar": (lambda: classic.resnet18(classes=10, cifar=True), (3, 32, 32)),
    "mobilenet_v2_cifar": (lambda: mobile.mobilenet_v2(classes=10, cifar=True), (3, 32, 32)),
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
