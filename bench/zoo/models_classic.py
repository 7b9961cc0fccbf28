"""ResNet-18/50, VGG-16, SqueezeNet 1.1, DenseNet-121, GoogLeNet in plain torch.nn.

Layer counts and channels follow the published architectures as torchvision
builds them (ResNet v1.5: stride on the 3x3; GoogLeNet with BatchNorm), so the
ONNX files are the graphs users export.
"""
import torch
from torch import nn


def conv_bn(cin, cout, k, stride=1, padding=None, groups=1, act=nn.ReLU, eps=1e-5):
    """conv (no bias) + BatchNorm + activation: the unit most of the zoo is made of."""
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2 if padding is None else padding,
                        groups=groups, bias=False), nn.BatchNorm2d(cout, eps=eps)]
    return nn.Sequential(*layers, act()) if act else nn.Sequential(*layers)


# ---------------------------------------------------------------- ResNet

class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, width, stride):
        super().__init__()
        self.body = nn.Sequential(conv_bn(cin, width, 3, stride), conv_bn(width, width, 3, act=None))
        self.down = (conv_bn(cin, width, 1, stride, act=None)
                     if stride != 1 or cin != width else nn.Identity())
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.body(x) + self.down(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, width, stride):
        super().__init__()
        out = width * 4
        self.body = nn.Sequential(conv_bn(cin, width, 1), conv_bn(width, width, 3, stride),
                                  conv_bn(width, out, 1, act=None))
        self.down = (conv_bn(cin, out, 1, stride, act=None)
                     if stride != 1 or cin != out else nn.Identity())
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.body(x) + self.down(x))


class ResNet(nn.Module):
    """cifar=True: the 32x32 form (3x3 stem, no max pool), as CIFAR training uses it."""

    def __init__(self, block, layers, classes=1000, cifar=False):
        super().__init__()
        self.stem = (conv_bn(3, 64, 3) if cifar else
                     nn.Sequential(conv_bn(3, 64, 7, 2), nn.MaxPool2d(3, 2, 1)))
        stages, cin = [], 64
        for i, n in enumerate(layers):
            width = 64 * 2 ** i
            for j in range(n):
                stages.append(block(cin, width, 2 if j == 0 and i > 0 else 1))
                cin = width * block.expansion
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.stages(self.stem(x))), 1))


def resnet18(**kw):
    return ResNet(BasicBlock, [2, 2, 2, 2], **kw)


def resnet50(**kw):
    return ResNet(Bottleneck, [3, 4, 6, 3], **kw)


# ---------------------------------------------------------------- VGG-16 (configuration D)

def vgg16(classes=1000):
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
    layers, cin = [], 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU()]
            cin = v
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(7), nn.Flatten(),
                         nn.Linear(512 * 7 * 7, 4096), nn.ReLU(), nn.Dropout(),
                         nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(), nn.Linear(4096, classes))


# ---------------------------------------------------------------- SqueezeNet 1.1

class Fire(nn.Module):
    def __init__(self, cin, squeeze, e1, e3):
        super().__init__()
        self.squeeze = nn.Sequential(nn.Conv2d(cin, squeeze, 1), nn.ReLU())
        self.e1 = nn.Sequential(nn.Conv2d(squeeze, e1, 1), nn.ReLU())
        self.e3 = nn.Sequential(nn.Conv2d(squeeze, e3, 3, padding=1), nn.ReLU())

    def forward(self, x):
        s = self.squeeze(x)
        return torch.cat([self.e1(s), self.e3(s)], 1)


def squeezenet1_1(classes=1000):
    pool = lambda: nn.MaxPool2d(3, 2, ceil_mode=True)  # noqa: E731
    return nn.Sequential(
        nn.Conv2d(3, 64, 3, 2), nn.ReLU(), pool(), Fire(64, 16, 64, 64), Fire(128, 16, 64, 64),
        pool(), Fire(128, 32, 128, 128), Fire(256, 32, 128, 128), pool(),
        Fire(256, 48, 192, 192), Fire(384, 48, 192, 192), Fire(384, 64, 256, 256),
        Fire(512, 64, 256, 256), nn.Dropout(), nn.Conv2d(512, classes, 1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten())


# ---------------------------------------------------------------- DenseNet-121

class DenseLayer(nn.Module):
    """BN-ReLU-1x1(4k)-BN-ReLU-3x3(k) on the concatenation of every earlier feature map."""

    def __init__(self, cin, growth=32, bn_size=4):
        super().__init__()
        self.body = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, bn_size * growth, 1, bias=False),
                                  nn.BatchNorm2d(bn_size * growth), nn.ReLU(),
                                  nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False))

    def forward(self, features):
        return self.body(torch.cat(features, 1))


class DenseBlock(nn.Module):
    def __init__(self, n, cin, growth=32):
        super().__init__()
        self.layers = nn.ModuleList(DenseLayer(cin + i * growth, growth) for i in range(n))

    def forward(self, x):
        features = [x]
        for layer in self.layers:
            features.append(layer(features))
        return torch.cat(features, 1)


def densenet121(classes=1000, growth=32, blocks=(6, 12, 24, 16)):
    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
              nn.MaxPool2d(3, 2, 1)]
    c = 64
    for i, n in enumerate(blocks):
        layers.append(DenseBlock(n, c, growth))
        c += n * growth
        if i < len(blocks) - 1:
            layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c // 2, 1, bias=False),
                       nn.AvgPool2d(2, 2)]
            c //= 2
    return nn.Sequential(*layers, nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(c, classes))


# ---------------------------------------------------------------- GoogLeNet (Inception v1 + BN)

class Inception(nn.Module):
    """Four branches concatenated; the "5x5" branch is a 3x3 as in torchvision's GoogLeNet."""

    def __init__(self, cin, c1, c3r, c3, c5r, c5, pool_proj):
        super().__init__()
        cb = lambda i, o, k: conv_bn(i, o, k, eps=1e-3)  # noqa: E731
        self.b1 = cb(cin, c1, 1)
        self.b2 = nn.Sequential(cb(cin, c3r, 1), cb(c3r, c3, 3))
        self.b3 = nn.Sequential(cb(cin, c5r, 1), cb(c5r, c5, 3))
        self.b4 = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), cb(cin, pool_proj, 1))

    def forward(self, x):
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)


def googlenet(classes=1000):
    cb = lambda i, o, k, s=1: conv_bn(i, o, k, s, eps=1e-3)  # noqa: E731
    pool = lambda k=3: nn.MaxPool2d(k, 2, ceil_mode=True)  # noqa: E731
    return nn.Sequential(
        cb(3, 64, 7, 2), pool(), cb(64, 64, 1), cb(64, 192, 3), pool(),
        Inception(192, 64, 96, 128, 16, 32, 32), Inception(256, 128, 128, 192, 32, 96, 64), pool(),
        Inception(480, 192, 96, 208, 16, 48, 64), Inception(512, 160, 112, 224, 24, 64, 64),
        Inception(512, 128, 128, 256, 24, 64, 64), Inception(512, 112, 144, 288, 32, 64, 64),
        Inception(528, 256, 160, 320, 32, 128, 128), pool(2),
        Inception(832, 256, 160, 320, 32, 128, 128), Inception(832, 384, 192, 384, 48, 128, 128),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(1024, classes))
