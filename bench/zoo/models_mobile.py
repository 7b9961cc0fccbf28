"""MobileNetV2, MobileNetV3-Large, EfficientNet-B0, ShuffleNetV2 x1.0 in plain torch.nn.

Block tables are the papers' (and torchvision's): expansion, channels, repeats,
strides, kernel sizes, squeeze-excite placement and activations.
"""
import torch
from torch import nn

from models_classic import conv_bn


def divisible(v, d=8):
    """Round channels to a multiple of 8, never more than 10% down (the MobileNet rule)."""
    new = max(d, int(v + d / 2) // d * d)
    return new + d if new < 0.9 * v else new


class SqueezeExcite(nn.Module):
    """global pool -> 1x1 -> act -> 1x1 -> gate -> scale."""

    def __init__(self, ch, squeeze, act=nn.ReLU, gate=nn.Hardsigmoid):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1, self.act = nn.Conv2d(ch, squeeze, 1), act()
        self.fc2, self.gate = nn.Conv2d(squeeze, ch, 1), gate()

    def forward(self, x):
        return x * self.gate(self.fc2(self.act(self.fc1(self.pool(x)))))


class InvertedResidual(nn.Module):
    """expand 1x1 -> depthwise kxk -> [SE] -> project 1x1, residual when shapes agree."""

    def __init__(self, cin, cout, k, stride, expanded, act, se=None):
        super().__init__()
        layers = [] if expanded == cin else [conv_bn(cin, expanded, 1, act=act)]
        layers.append(conv_bn(expanded, expanded, k, stride, groups=expanded, act=act))
        if se is not None:
            layers.append(se(expanded))
        layers.append(conv_bn(expanded, cout, 1, act=None))
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


# ---------------------------------------------------------------- MobileNetV2

def mobilenet_v2(classes=1000, cifar=False):
    """cifar=True: stride 1 in the stem and the 24-channel stage (32x32 inputs)."""
    cfg = [(1, 16, 1, 1), (6, 24, 2, 1 if cifar else 2), (6, 32, 3, 2), (6, 64, 4, 2),
           (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
    layers, cin = [conv_bn(3, 32, 3, 1 if cifar else 2, act=nn.ReLU6)], 32
    for t, c, n, s in cfg:
        for i in range(n):
            layers.append(InvertedResidual(cin, c, 3, s if i == 0 else 1, cin * t, nn.ReLU6))
            cin = c
    layers += [conv_bn(cin, 1280, 1, act=nn.ReLU6), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
               nn.Dropout(0.2), nn.Linear(1280, classes)]
    return nn.Sequential(*layers)


# ---------------------------------------------------------------- MobileNetV3-Large

# (kernel, expanded, out, squeeze-excite, activation, stride)
V3_LARGE = [(3, 16, 16, False, "RE", 1), (3, 64, 24, False, "RE", 2), (3, 72, 24, False, "RE", 1),
            (5, 72, 40, True, "RE", 2), (5, 120, 40, True, "RE", 1), (5, 120, 40, True, "RE", 1),
            (3, 240, 80, False, "HS", 2), (3, 200, 80, False, "HS", 1),
            (3, 184, 80, False, "HS", 1), (3, 184, 80, False, "HS", 1),
            (3, 480, 112, True, "HS", 1), (3, 672, 112, True, "HS", 1),
            (5, 672, 160, True, "HS", 2), (5, 960, 160, True, "HS", 1),
            (5, 960, 160, True, "HS", 1)]


def mobilenet_v3_large_features():
    """The backbone: stem, 15 bnecks, last 1x1 conv to 960 (DBNet reuses it)."""
    layers, cin = [conv_bn(3, 16, 3, 2, act=nn.Hardswish)], 16
    for k, exp, out, se, act, s in V3_LARGE:
        se_fn = (lambda c: SqueezeExcite(c, divisible(c // 4))) if se else None
        layers.append(InvertedResidual(cin, out, k, s, exp,
                                       nn.ReLU if act == "RE" else nn.Hardswish, se_fn))
        cin = out
    layers.append(conv_bn(cin, 960, 1, act=nn.Hardswish))
    return nn.Sequential(*layers)


def mobilenet_v3_large(classes=1000):
    return nn.Sequential(mobilenet_v3_large_features(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(960, 1280), nn.Hardswish(), nn.Dropout(0.2),
                         nn.Linear(1280, classes))


# ---------------------------------------------------------------- EfficientNet-B0

# (expansion, kernel, stride, in, out, repeats)
B0 = [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
      (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1)]


def efficientnet_b0(classes=1000):
    layers = [conv_bn(3, 32, 3, 2, act=nn.SiLU)]
    for t, k, s, cin, cout, n in B0:
        for i in range(n):
            c = cin if i == 0 else cout
            # squeeze to a quarter of the block's input channels, SiLU then sigmoid gate
            se = lambda ch, sq=max(1, c // 4): SqueezeExcite(ch, sq, nn.SiLU, nn.Sigmoid)  # noqa: E731
            layers.append(InvertedResidual(c, cout, k, s if i == 0 else 1, c * t, nn.SiLU, se))
    layers += [conv_bn(320, 1280, 1, act=nn.SiLU), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
               nn.Dropout(0.2), nn.Linear(1280, classes)]
    return nn.Sequential(*layers)


# ---------------------------------------------------------------- ShuffleNetV2 x1.0

def channel_shuffle(x, groups=2):
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class ShuffleUnit(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        half = cout // 2
        self.stride = stride
        if stride > 1:
            self.left = nn.Sequential(conv_bn(cin, cin, 3, stride, groups=cin, act=None),
                                      conv_bn(cin, half, 1))
        self.right = nn.Sequential(conv_bn(cin if stride > 1 else half, half, 1),
                                   conv_bn(half, half, 3, stride, groups=half, act=None),
                                   conv_bn(half, half, 1))

    def forward(self, x):
        if self.stride == 1:
            a, b = x.chunk(2, dim=1)
            out = torch.cat([a, self.right(b)], 1)
        else:
            out = torch.cat([self.left(x), self.right(x)], 1)
        return channel_shuffle(out)


class ShuffleNetV2(nn.Module):
    def __init__(self, classes=1000, repeats=(4, 8, 4), channels=(24, 116, 232, 464, 1024)):
        super().__init__()
        self.stem = nn.Sequential(conv_bn(3, channels[0], 3, 2), nn.MaxPool2d(3, 2, 1))
        units, cin = [], channels[0]
        for n, c in zip(repeats, channels[1:4]):
            units += [ShuffleUnit(cin, c, 2)] + [ShuffleUnit(c, c, 1) for _ in range(n - 1)]
            cin = c
        self.units = nn.Sequential(*units)
        self.conv5 = conv_bn(cin, channels[4], 1)
        self.fc = nn.Linear(channels[4], classes)

    def forward(self, x):
        return self.fc(self.conv5(self.units(self.stem(x))).mean([2, 3]))


def shufflenet_v2():
    return ShuffleNetV2()
