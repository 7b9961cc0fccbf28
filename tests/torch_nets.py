"""Small torch.nn networks of the families torch users export to ONNX (issue 21).

Each builder returns (module, in_channels, sizes): a seeded torch module in
eval mode and the two per-sample spatial sizes the tests run. Only imported
when torch is installed (tests/test_onnx_torch_models.py skips otherwise).
"""
import torch
import torch.nn.functional as F
from torch import nn


def _randomize(module, seed):
    """Seeded weights, and BatchNorm statistics that are not the identity."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            elif isinstance(m, nn.LayerNorm):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
    return module.eval()


def conv_bn(cin, cout, k=3, s=1, groups=1, act=nn.ReLU):
    layers = [nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, act()) if act is not None else nn.Sequential(*layers)


# ------------------------------------------------------------------ text recognizer

class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        n, t, c = x.shape
        qkv = self.qkv(x).reshape(n, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(n, t, c))


class TransformerBlock(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TextRecognizer(nn.Module):
    """Conv stem, two attention blocks, CTC head: (N, 3, H, W) -> (N, W/4, classes)."""

    def __init__(self, dim=16, classes=11):
        super().__init__()
        self.stem = nn.Sequential(conv_bn(3, 8, 3, 2), conv_bn(8, dim, 3, 2))
        self.blocks = nn.Sequential(TransformerBlock(dim, 2), TransformerBlock(dim, 2))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.stem(x).mean(dim=2)          # (N, C, W'): height pooled away
        x = self.blocks(x.permute(0, 2, 1))  # (N, T, C)
        return F.log_softmax(self.head(self.norm(x)), dim=-1)


# ------------------------------------------------------------------ ConvNeXt

class LayerNorm2d(nn.LayerNorm):
    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pw1, self.act, self.pw2 = nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 0.5))

    def forward(self, x):
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.gamma * self.pw2(self.act(self.pw1(self.norm(y))))
        return x + y.permute(0, 3, 1, 2)


class ConvNeXt(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 4, 4), LayerNorm2d(8, eps=1e-6))
        self.stage1 = nn.Sequential(ConvNeXtBlock(8), ConvNeXtBlock(8))
        self.down = nn.Sequential(LayerNorm2d(8, eps=1e-6), nn.Conv2d(8, 16, 2, 2))
        self.stage2 = ConvNeXtBlock(16)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        x = self.stage2(self.down(self.stage1(self.stem(x))))
        return self.head(x.mean(dim=(2, 3)))


# ------------------------------------------------------------------ EfficientNet-B0 style

class SqueezeExcite(nn.Module):
    def __init__(self, channels, squeezed, act=nn.SiLU, gate=nn.Sigmoid):
        super().__init__()
        self.reduce, self.act = nn.Conv2d(channels, squeezed, 1), act()
        self.expand, self.gate = nn.Conv2d(squeezed, channels, 1), gate()

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        return x * self.gate(self.expand(self.act(self.reduce(s))))


class MBConv(nn.Module):
    def __init__(self, cin, cout, expand, k, stride):
        super().__init__()
        mid = cin * expand
        layers = [conv_bn(cin, mid, 1, act=nn.SiLU)] if expand != 1 else []
        layers += [conv_bn(mid, mid, k, stride, groups=mid, act=nn.SiLU),
                   SqueezeExcite(mid, max(1, cin // 4)), conv_bn(mid, cout, 1, act=None)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.block(x)
        return x + y if self.residual else y


class EfficientNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = conv_bn(3, 8, 3, 2, act=nn.SiLU)
        self.blocks = nn.Sequential(MBConv(8, 8, 1, 3, 1), MBConv(8, 12, 6, 3, 2),
                                    MBConv(12, 12, 6, 3, 1), MBConv(12, 16, 6, 5, 2))
        self.head = conv_bn(16, 32, 1, act=nn.SiLU)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.head(self.blocks(self.stem(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# ------------------------------------------------------------------ ResNet

class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = conv_bn(cin, cout, 3, stride)
        self.conv2 = conv_bn(cout, cout, 3, act=None)
        self.down = (conv_bn(cin, cout, 1, stride, act=None)
                     if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x):
        return F.relu(self.conv2(self.conv1(x)) + self.down(x))


class ResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(conv_bn(3, 8, 7, 2), nn.MaxPool2d(3, 2, 1))
        self.layers = nn.Sequential(BasicBlock(8, 8, 1), BasicBlock(8, 16, 2))
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = nn.AdaptiveAvgPool2d((1, 1))(self.layers(self.stem(x)))
        return self.fc(x.flatten(1))


# ------------------------------------------------------------------ MobileNetV3

class InvertedResidualV3(nn.Module):
    def __init__(self, cin, mid, cout, k, stride, se, act):
        super().__init__()
        layers = [conv_bn(cin, mid, 1, act=act), conv_bn(mid, mid, k, stride, mid, act=act)]
        if se:
            layers.append(SqueezeExcite(mid, mid // 4, act=nn.ReLU, gate=nn.Hardsigmoid))
        layers.append(conv_bn(mid, cout, 1, act=None))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.block(x)
        return x + y if self.residual else y


class MobileNetV3(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            conv_bn(3, 8, 3, 2, act=nn.Hardswish),
            InvertedResidualV3(8, 16, 8, 3, 2, True, nn.ReLU),
            InvertedResidualV3(8, 24, 12, 3, 1, False, nn.ReLU),
            InvertedResidualV3(12, 32, 12, 5, 1, True, nn.Hardswish),
            conv_bn(12, 32, 1, act=nn.Hardswish))
        self.classifier = nn.Sequential(nn.Linear(32, 24), nn.Hardswish(), nn.Dropout(0.2),
                                        nn.Linear(24, 10))

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


# ------------------------------------------------------------------ MobileNetV2

class InvertedResidualV2(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        mid = cin * expand
        self.block = nn.Sequential(conv_bn(cin, mid, 1, act=nn.ReLU6),
                                   conv_bn(mid, mid, 3, stride, mid, act=nn.ReLU6),
                                   conv_bn(mid, cout, 1, act=None))
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.block(x) if self.residual else self.block(x)


class MobileNetV2(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(conv_bn(3, 8, 3, 2, act=nn.ReLU6),
                                      InvertedResidualV2(8, 8, 1, 1),
                                      InvertedResidualV2(8, 12, 2, 6),
                                      InvertedResidualV2(12, 12, 1, 6),
                                      conv_bn(12, 32, 1, act=nn.ReLU6))
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(32, 10))

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


# ------------------------------------------------------------------ SqueezeNet

class Fire(nn.Module):
    def __init__(self, cin, squeeze, expand):
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.e1, self.e3 = nn.Conv2d(squeeze, expand, 1), nn.Conv2d(squeeze, expand, 3, padding=1)

    def forward(self, x):
        x = F.relu(self.squeeze(x))
        return torch.cat([F.relu(self.e1(x)), F.relu(self.e3(x))], 1)


class SqueezeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 16, 3, 2), nn.ReLU(),
                                      nn.MaxPool2d(3, 2, ceil_mode=True),
                                      Fire(16, 4, 8), Fire(16, 4, 8),
                                      nn.MaxPool2d(3, 2, ceil_mode=True), Fire(16, 8, 16))
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(32, 10, 1), nn.ReLU(),
                                        nn.AdaptiveAvgPool2d((1, 1)))

    def forward(self, x):
        return torch.flatten(self.classifier(self.features(x)), 1)


# ------------------------------------------------------------------ ShuffleNetV2

def channel_shuffle(x, groups):
    n, c, h, w = x.size()
    x = x.view(n, groups, c // groups, h, w).transpose(1, 2).contiguous()
    return x.view(n, -1, h, w)


class ShuffleUnit(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.stride, half = stride, cout // 2
        if stride > 1:
            self.branch1 = nn.Sequential(conv_bn(cin, cin, 3, stride, cin, act=None),
                                         conv_bn(cin, half, 1))
            bin_ = cin
        else:
            bin_ = half
        self.branch2 = nn.Sequential(conv_bn(bin_, half, 1), conv_bn(half, half, 3, stride, half,
                                                                     act=None),
                                     conv_bn(half, half, 1))

    def forward(self, x):
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(conv_bn(3, 8, 3, 2), nn.MaxPool2d(3, 2, 1))
        self.stage = nn.Sequential(ShuffleUnit(8, 16, 2), ShuffleUnit(16, 16, 1))
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(self.stage(self.stem(x)).mean([2, 3]))


# ------------------------------------------------------------------ DenseNet

class DenseLayer(nn.Module):
    def __init__(self, cin, growth):
        super().__init__()
        self.body = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, 2 * growth, 1,
                                                                             bias=False),
                                  nn.BatchNorm2d(2 * growth), nn.ReLU(),
                                  nn.Conv2d(2 * growth, growth, 3, padding=1, bias=False))

    def forward(self, features):
        return self.body(torch.cat(features, 1))


class DenseNet(nn.Module):
    def __init__(self, growth=4):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, 2, 1, bias=False)
        self.dense = nn.ModuleList([DenseLayer(8 + i * growth, growth) for i in range(3)])
        self.transition = nn.Sequential(nn.BatchNorm2d(8 + 3 * growth), nn.ReLU(),
                                        nn.Conv2d(8 + 3 * growth, 10, 1, bias=False),
                                        nn.AvgPool2d(2, 2))

    def forward(self, x):
        features = [self.stem(x)]
        for layer in self.dense:
            features.append(layer(features))
        return self.transition(torch.cat(features, 1))


# ------------------------------------------------------------------ Inception

class InceptionBlock(nn.Module):
    def __init__(self, cin):
        super().__init__()
        self.b1 = conv_bn(cin, 8, 1)
        self.b3 = nn.Sequential(conv_bn(cin, 6, 1), conv_bn(6, 8, 3))
        self.b5 = nn.Sequential(conv_bn(cin, 4, 1), conv_bn(4, 6, 5))
        self.pool = nn.Sequential(nn.MaxPool2d(3, 1, 1), conv_bn(cin, 4, 1))

    def forward(self, x):
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.pool(x)], 1)


class Inception(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(conv_bn(3, 12, 3, 2), nn.MaxPool2d(3, 2, ceil_mode=True))
        self.block = InceptionBlock(12)
        self.pool = nn.AvgPool2d(3, 1, 1, count_include_pad=False)

    def forward(self, x):
        return self.pool(self.block(self.stem(x)))


# ------------------------------------------------------------------ UNet

class Up(nn.Module):
    """UNet's decoder step as milesial/Pytorch-UNet writes it: ConvTranspose x2, pad to
    the skip tensor's size by the size difference (odd sizes), concat, conv."""

    def __init__(self, cin, cskip, cout):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cin // 2, 2, stride=2)
        self.conv = conv_bn(cin // 2 + cskip, cout)

    def forward(self, x, skip):
        x = self.up(x)
        dy, dx = skip.size()[2] - x.size()[2], skip.size()[3] - x.size()[3]
        x = F.pad(x, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc1, self.enc2 = conv_bn(3, 8), conv_bn(8, 16)
        self.mid = conv_bn(16, 16)
        self.up2 = Up(16, 16, 8)
        self.dec1 = conv_bn(16, 8)
        self.out = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        s1 = self.enc1(x)
        s2 = self.enc2(F.max_pool2d(s1, 2))
        m = self.mid(F.max_pool2d(s2, 2))
        d2 = self.up2(m, s2)
        # the other decoder form: interpolate to the skip tensor's size
        d2 = F.interpolate(d2, size=s1.shape[2:], mode="bilinear", align_corners=False)
        return self.out(self.dec1(torch.cat([d2, s1], 1)))


# ------------------------------------------------------------------ FPN head

class FPN(nn.Module):
    """Backbone at strides 2, 4, 8; top-down lateral sum; DBNet-style fused map."""

    def __init__(self, width=8):
        super().__init__()
        self.c1, self.c2 = conv_bn(3, 8, 3, 2), conv_bn(8, 12, 3, 2)
        self.c3 = conv_bn(12, 16, 3, 2)
        self.lat = nn.ModuleList([nn.Conv2d(c, width, 1) for c in (8, 12, 16)])
        self.smooth = nn.ModuleList([nn.Conv2d(width, width, 3, padding=1) for _ in range(3)])
        # DBNet's probability head: conv, then two x2 ConvTranspose back to the input size
        self.head = nn.Sequential(conv_bn(3 * width, width, 3),
                                  nn.ConvTranspose2d(width, width, 2, 2), nn.BatchNorm2d(width),
                                  nn.ReLU(), nn.ConvTranspose2d(width, 1, 2, 2))

    def forward(self, x):
        f1 = self.c1(x)
        f2 = self.c2(f1)
        f3 = self.c3(f2)
        p3 = self.lat[2](f3)
        # x2 upsample cropped to the lateral's size (odd sizes), as some FPN heads write it
        up3 = F.interpolate(p3, scale_factor=2.0, mode="nearest")
        p2 = self.lat[1](f2) + up3[:, :, :f2.shape[2], :f2.shape[3]]
        p1 = self.lat[0](f1) + F.interpolate(p2, size=f1.shape[-2:], mode="nearest")
        outs = [s(p) for s, p in zip(self.smooth, (p1, p2, p3))]
        fused = torch.cat([outs[0]] + [F.interpolate(o, size=outs[0].shape[2:], mode="bilinear",
                                                     align_corners=False) for o in outs[1:]], 1)
        return torch.sigmoid(self.head(fused))


# ------------------------------------------------------------------ 1-D audio

class AudioNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(1, 8, 9, 2, 4, bias=False), nn.BatchNorm1d(8), nn.ReLU(), nn.MaxPool1d(2),
            nn.Conv1d(8, 16, 5, 1, 2, bias=False), nn.BatchNorm1d(16), nn.ReLU(),
            nn.Conv1d(16, 16, 3, 2, 1, groups=4), nn.ReLU())
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        return self.fc(self.body(x).mean(dim=-1))


# ------------------------------------------------------------------ hybrid CNN-transformer

class HybridBlock(nn.Module):
    """MobileViT-style: conv features as tokens, attention, and back to (N, C, H, W) with
    h and w read from the feature map (Reshape to computed sizes)."""

    def __init__(self, dim=16):
        super().__init__()
        self.stem = nn.Sequential(conv_bn(3, dim, 3, 2), conv_bn(dim, dim, 3, 1, dim))
        self.norm, self.attn = nn.LayerNorm(dim), Attention(dim, 2)
        self.fuse = conv_bn(2 * dim, dim, 1)

    def forward(self, x):
        x = self.stem(x)
        n, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)
        t = t + self.attn(self.norm(t))
        y = t.transpose(1, 2).reshape(n, c, h, w)
        return self.fuse(torch.cat([x, y], 1))


#: name -> (class, in_channels, two per-sample spatial sizes)
NETS = {
    "text_recognizer": (TextRecognizer, 3, [(32, 64), (24, 100)]),
    "convnext": (ConvNeXt, 3, [(32, 32), (40, 56)]),
    "efficientnet": (EfficientNet, 3, [(32, 32), (37, 45)]),
    "resnet": (ResNet, 3, [(32, 32), (35, 47)]),
    "mobilenetv3": (MobileNetV3, 3, [(32, 32), (37, 29)]),
    "squeezenet": (SqueezeNet, 3, [(32, 32), (41, 35)]),
    "shufflenetv2": (ShuffleNetV2, 3, [(32, 32), (40, 48)]),
    "densenet": (DenseNet, 3, [(16, 16), (22, 30)]),
    "inception": (Inception, 3, [(32, 32), (39, 27)]),
    "unet": (UNet, 3, [(16, 16), (22, 29)]),
    "fpn": (FPN, 3, [(32, 32), (36, 44)]),
    "mobilenetv2": (MobileNetV2, 3, [(32, 32), (37, 29)]),
    "hybrid": (HybridBlock, 3, [(16, 16), (19, 26)]),
    "audio": (AudioNet, 1, [(400,), (257,)]),
}


def build(name, seed=0):
    cls, channels, sizes = NETS[name]
    torch.manual_seed(seed)
    return _randomize(cls(), seed), channels, sizes
