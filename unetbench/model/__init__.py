"""The U-Net and the arithmetic of its input and output sizes.

``UNet`` and ``unet_from_spec`` are loaded on first use, so checking a spec's sizes does not import torch.
"""

from typing import TYPE_CHECKING

from unetbench.model.sizes import context_margin, nearest_valid_input_sizes, output_size

if TYPE_CHECKING:
    from unetbench.model.unet import UNet, unet_from_spec

__all__ = ["UNet", "context_margin", "nearest_valid_input_sizes", "output_size", "unet_from_spec"]


def __getattr__(name: str):
    if name in ("UNet", "unet_from_spec"):
        from unetbench.model import unet

        return getattr(unet, name)
    raise AttributeError(f"module 'unetbench.model' has no attribute {name!r}")
