"""ResNet-34, written here because torchvision does not import with the CPU build of torch.

Same layout and parameter names as torchvision's ``resnet34`` (conv1, bn1,
layer1..4, fc), so its weights load here unchanged if a user has them.
"""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """A ResNet with BasicBlocks.

    Args:
        layers: blocks per stage ((3, 4, 6, 3) is ResNet-34).
        num_classes: size of the head.
        in_chans: input bands of the default stem.
        stem_conv: replaces the 7x7 stride-2 input convolution; it must map the
            input to 64 channels at half resolution.

    ``forward(x, mask=None)`` hands ``mask`` to ``conv1``: with a DynamicConv2D
    there (``dynamic_conv.with_dynamic_stem``) it is the band presence mask.
    """

    classifier = "fc"  # the layer that gives the logits (timm's name for it): INT8 PTQ leaves it float

    def __init__(
        self,
        layers: tuple[int, ...],
        num_classes: int,
        in_chans: int = 3,
        stem_conv: nn.Module | None = None,
    ):
        super().__init__()
        self.layers = tuple(layers)
        self.conv1 = nn.Conv2d(in_chans, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages, cin = [], 64
        for i, (n, cout) in enumerate(zip(layers, (64, 128, 256, 512))):
            stride = 1 if i == 0 else 2
            blocks = [BasicBlock(cin, cout, stride)] + [BasicBlock(cout, cout) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        # Zero the last BN of each block so every residual branch starts as identity:
        # trains faster from scratch, which is all we ever do (no hub weights).
        for m in self.modules():
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)
        if stem_conv is not None:  # after the init above, which would overwrite its weights
            self.conv1 = stem_conv

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.conv1(x) if mask is None else self.conv1(x, mask)
        x = self.maxpool(self.relu(self.bn1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))
