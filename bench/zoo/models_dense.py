"""Dense-prediction and audio nets: UNet, a DBNet-style text detector, the M5 1-D audio net."""
import torch
from torch import nn
from torch.nn import functional as F

from models_classic import conv_bn
from models_mobile import mobilenet_v3_large_features


# ---------------------------------------------------------------- UNet (Ronneberger et al., padded)

def double_conv(cin, cout):
    return nn.Sequential(conv_bn(cin, cout, 3), conv_bn(cout, cout, 3))


class Up(nn.Module):
    """ConvTranspose 2x2/2 upsampling, concat with the skip, two 3x3 convs."""

    def __init__(self, cin, cout):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cin // 2, 2, 2)
        self.conv = double_conv(cin, cout)

    def forward(self, x, skip):
        return self.conv(torch.cat([skip, self.up(x)], 1))


class UNet(nn.Module):
    def __init__(self, cin=3, classes=2, widths=(64, 128, 256, 512, 1024)):
        super().__init__()
        self.inc = double_conv(cin, widths[0])
        self.downs = nn.ModuleList(nn.Sequential(nn.MaxPool2d(2), double_conv(a, b))
                                   for a, b in zip(widths, widths[1:]))
        self.ups = nn.ModuleList(Up(b, a) for a, b in reversed(list(zip(widths, widths[1:]))))
        self.out = nn.Conv2d(widths[0], classes, 1)

    def forward(self, x):
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        x = skips.pop()
        for up in self.ups:
            x = up(x, skips.pop())
        return self.out(x)


# ---------------------------------------------------------------- DBNet-style detector

class DBNet(nn.Module):
    """MobileNetV3-Large backbone (strides 4, 8, 16, 32) + DB-FPN (nearest Resize, concat) + DB head.

    The FPN and head follow PaddleOCR's det_mv3_db: 1x1 laterals to 256, top-down
    nearest upsampling and adds, 3x3 convs to 64, upsample all to stride 4, concat;
    head conv3x3-BN-ReLU, two ConvTranspose 2x2/2, sigmoid probability map.
    """

    TAPS = (3, 6, 12, 16)   # backbone indices ending the stride-4, 8, 16 and 32 stages

    def __init__(self, inner=256):
        super().__init__()
        self.backbone = mobilenet_v3_large_features()
        chans = (24, 40, 112, 960)
        self.lateral = nn.ModuleList(nn.Conv2d(c, inner, 1, bias=False) for c in chans)
        self.smooth = nn.ModuleList(nn.Conv2d(inner, inner // 4, 3, padding=1, bias=False)
                                    for _ in chans)
        q = inner // 4
        self.head = nn.Sequential(
            conv_bn(inner, q, 3), nn.ConvTranspose2d(q, q, 2, 2), nn.BatchNorm2d(q), nn.ReLU(),
            nn.ConvTranspose2d(q, 1, 2, 2), nn.Sigmoid())

    def forward(self, x):
        feats = []
        for i, layer in enumerate(self.backbone):
            x = layer(x)
            if i in self.TAPS:
                feats.append(x)
        lat = [conv(f) for conv, f in zip(self.lateral, feats)]
        for i in range(len(lat) - 2, -1, -1):   # top-down: coarse to fine
            lat[i] = lat[i] + F.interpolate(lat[i + 1], scale_factor=2.0, mode="nearest")
        outs = [F.interpolate(conv(p), scale_factor=float(2 ** i), mode="nearest") if i else conv(p)
                for i, (conv, p) in enumerate(zip(self.smooth, lat))]
        return self.head(torch.cat(outs[::-1], 1))


# ---------------------------------------------------------------- M5 (Dai et al. 2017), raw waveform

def m5(classes=35):
    """Conv1d 80/4 stem + three 3-tap stages (channels 128-128-256-512), BN-ReLU-MaxPool(4) each.

    As in torchaudio's speech-commands tutorial, at the paper's widths: unpadded, 35 classes.
    """
    def stage(cin, cout, k, stride=1):
        return [nn.Conv1d(cin, cout, k, stride),
                nn.BatchNorm1d(cout), nn.ReLU(), nn.MaxPool1d(4)]
    return nn.Sequential(*stage(1, 128, 80, 4), *stage(128, 128, 3), *stage(128, 256, 3),
                         *stage(256, 512, 3), nn.AdaptiveAvgPool1d(1), nn.Flatten(),
                         nn.Linear(512, classes))
