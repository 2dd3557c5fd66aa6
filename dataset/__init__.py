"""Turning AVE-format HDF5 files into float32 tensors on the training device."""
