"""unetbench: reproduce and measure U-Net (Ronneberger, Fischer & Brox, MICCAI 2015) on its own challenges."""

__version__ = "0.2.0"
