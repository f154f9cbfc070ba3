"""Prediction of whole images from tiles: overlap-tile (the paper's) and the ablated alternative."""
