"""The small networks of the registry that are not torchvision's (imports torch)."""

from __future__ import annotations

import torch
from torch import nn


def mlp(in_features: int, num_classes: int, hidden: tuple[int, ...] = (256, 128),
        dropout: float = 0.1) -> nn.Sequential:
    """Flatten, then Linear-ReLU-Dropout blocks, then a linear head."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU(inplace=True), nn.Dropout(dropout)]
        width = size
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


class SmallCNN(nn.Module):
    """Three conv-BN-ReLU-pool blocks, global average pooling, dropout, linear head.

    Pools use ``ceil_mode`` so a 1x1 map stays 1x1: works from 4x4 (digits are 8x8) upwards.
    """

    def __init__(self, channels: int, num_classes: int, widths: tuple[int, ...] = (32, 64, 128),
                 dropout: float = 0.2):
        super().__init__()
        blocks: list[nn.Module] = []
        in_ch = channels
        for width in widths:
            blocks += [
                nn.Conv2d(in_ch, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2, ceil_mode=True),
            ]
            in_ch = width
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x)).flatten(1)
        return self.fc(self.dropout(x))
