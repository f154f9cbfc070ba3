"""The U-Net and the arithmetic of its input and output sizes."""

from unetbench.model.sizes import context_margin, nearest_valid_input_sizes, output_size

__all__ = ["context_margin", "nearest_valid_input_sizes", "output_size"]
