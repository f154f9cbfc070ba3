"""The U-Net of Ronneberger, Fischer & Brox (2015), Fig. 1, and its ablation variant.

Default: 5 levels (4 poolings), 64 channels doubling to 1024, per level two unpadded 3x3 convolutions
with ReLU, 2x2 max-pooling with stride 2, 2x2 up-convolutions halving the channels, crop-and-concatenate
skip connections, a 1x1 convolution to the classes, He initialisation. A 572x572 input gives a 388x388
output and, for 2 classes, 31,030,658 parameters.

**Drop-out as the authors released it.** The paper says only "drop-out layers at the end of the
contracting path" (Sec. 3.1). The authors' 2015 release (u-net-release-2015-10-02, its Caffe model
definition as parsed by independent ports in Chainer, MatConvNet and Keras) has two element-wise
``Dropout(0.5)`` layers: one on the 512-channel level, after its two convolutions and ReLUs, so that
both the max-pooling and the skip connection read the dropped features, and one on the 1024-channel
level before its up-convolution. Here: ``nn.Dropout`` (element-wise, not whole channels) on the outputs
of the two deepest levels, with the same placement for any depth.

**Differences from the release that this network keeps** (each one follows the paper's Fig. 1 where the
release departs from it):

- No ReLU after the up-convolutions; the release applies one (``relu_u3a`` .. ``relu_u0a``). Fig. 1
  and Sec. 2 describe the up-convolution as a linear 2x2 convolution followed by concatenation.
- The last up-convolution halves the channels (128 -> 64); the release's ``upconv_u1d_u0a`` keeps
  128, so its first top-level convolution reads 192 channels. Keeping Fig. 1's width gives the
  paper's 31,030,658 parameters.
- Concatenation order [cropped skip, up-sampled]; the release concatenates [up-sampled, skip]. This
  only permutes the input channels of the next convolution and changes nothing a network can learn.

``padding="same"`` pads every convolution with zeros so the output keeps the input size (the ablation's
network); ``batch_norm=True`` adds batch normalisation after each convolution (not in the paper).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from unetbench.model.sizes import Padding, context_margin, nearest_valid_input_sizes, output_size, unet_kwargs


class DoubleConv(nn.Sequential):
    """Two 3x3 convolutions, each followed by (optional batch norm and) ReLU (paper, Sec. 2)."""

    def __init__(self, in_channels: int, out_channels: int, *, padding: Padding, batch_norm: bool):
        pad = 1 if padding == "same" else 0
        layers: list[nn.Module] = []
        for c_in in (in_channels, out_channels):
            layers.append(nn.Conv2d(c_in, out_channels, 3, padding=pad, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


def center_crop(features: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The central (height, width) part of (B, C, H, W) features: the "copy and crop" of Fig. 1."""
    top = (features.shape[-2] - height) // 2
    left = (features.shape[-1] - width) // 2
    return features[..., top : top + height, left : left + width]


class UNet(nn.Module):
    """U-Net with configurable depth, width, padding, drop-out and batch norm.

    Parameters
    ----------
    in_channels, classes : int
        Input channels and output classes (softmax over ``classes``).
    depth : int
        Levels, i.e. ``depth - 1`` poolings (paper: 5).
    base_channels : int
        Channels of the first level, doubled at every level (paper: 64).
    padding : "valid" or "same"
        Unpadded convolutions (paper) or zero-padded ones (ablation).
    dropout : float
        Element-wise drop-out probability on the outputs of the two deepest levels (the release: 0.5 on
        the 512- and the 1024-channel levels); 0 removes both layers.
    batch_norm : bool
        Batch normalisation after each convolution (not in the paper).
    """

    def __init__(
        self,
        in_channels: int = 1,
        classes: int = 2,
        *,
        depth: int = 5,
        base_channels: int = 64,
        padding: Padding = "valid",
        dropout: float = 0.5,
        batch_norm: bool = False,
    ):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        if padding not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
        self.depth, self.padding, self.in_channels = depth, padding, in_channels
        widths = [base_channels * 2**level for level in range(depth)]
        self.encoders = nn.ModuleList()
        c_in = in_channels
        for width in widths:
            self.encoders.append(DoubleConv(c_in, width, padding=padding, batch_norm=batch_norm))
            c_in = width
        self.pool = nn.MaxPool2d(2, stride=2)
        # "Drop-out layers at the end of the contracting path perform further implicit data augmentation"
        # (Sec. 3.1); where and which kind as released (module docstring).
        self.dropout_levels = tuple(range(max(0, depth - 2), depth)) if dropout > 0 else ()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.upconvs = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for width in reversed(widths[:-1]):
            self.upconvs.append(nn.ConvTranspose2d(width * 2, width, 2, stride=2))  # halves the channels
            self.decoders.append(DoubleConv(width * 2, width, padding=padding, batch_norm=batch_norm))
        self.head = nn.Conv2d(widths[0], classes, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He initialisation (paper, Sec. 3): normal with std sqrt(2 / N), N the inputs of one unit.

        N = in_channels x 3 x 3 for a 3x3 convolution, in_channels for the 1x1 head, and in_channels for
        a 2x2 stride-2 up-convolution (each output pixel receives one input pixel per channel). Biases 0.
        """
        for module in self.modules():
            if isinstance(module, nn.ConvTranspose2d):
                fan_in = module.in_channels
            elif isinstance(module, nn.Conv2d):
                fan_in = module.in_channels * module.kernel_size[0] * module.kernel_size[1]
            else:
                continue
            nn.init.normal_(module.weight, mean=0.0, std=math.sqrt(2.0 / fan_in))
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    # --- size arithmetic -------------------------------------------------------------------------

    def output_size(self, size: int) -> int:
        """Output edge for an input edge; ValueError naming the nearest valid sizes if it cannot be taken."""
        return output_size(size, depth=self.depth, padding=self.padding)

    def valid_input_sizes_near(self, size: int) -> list[int]:
        return nearest_valid_input_sizes(size, depth=self.depth, padding=self.padding)

    @property
    def margin(self) -> int:
        """Context consumed at each border: (input - output) / 2, 92 px for the paper's network."""
        return context_margin(depth=self.depth, padding=self.padding)

    # --- forward ---------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, classes, H', W') logits; H' = W' = output_size(H) for valid padding."""
        for size in x.shape[-2:]:
            self.output_size(int(size))  # a clear ValueError before a shape error deep inside
        return self.logits(x)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` without the size check, whose Python integers a traced or exported graph would
        fix; for sizes the network takes (:meth:`output_size`)."""
        skips = []
        for level, encoder in enumerate(self.encoders):
            x = encoder(x)
            if level in self.dropout_levels:
                x = self.dropout(x)  # before the pooling and the skip connection read it
            if level < self.depth - 1:
                skips.append(x)
                x = self.pool(x)
        for upconv, decoder, skip in zip(self.upconvs, self.decoders, reversed(skips), strict=True):
            x = upconv(x)
            x = decoder(torch.cat([center_crop(skip, x.shape[-2], x.shape[-1]), x], dim=1))
        return self.head(x)


class ProbabilityUNet(UNet):
    """The same network (same parameters, same state dict) whose output is the soft-max over the
    classes: P(class) per pixel, what an exported model gives (:mod:`unetbench.exports.model_files`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(x), dim=1)


def unet_from_spec(model_spec) -> UNet:
    """The network a :class:`~unetbench.spec.ModelSpec` describes."""
    return UNet(**unet_kwargs(model_spec))
