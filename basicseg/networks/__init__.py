"""The BASICseg U-Nets (``unet``) and the shipped weights with their model cards (``registry``)."""
