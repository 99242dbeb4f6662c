"""Quantization primitives: pure math on tensors (packing, affine, codebook)."""
