"""Triton kernels of funknn_fast (installed as ``funknn_fast.kernels``)."""
