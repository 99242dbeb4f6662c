"""onnxruntime sessions for the export tests."""

from __future__ import annotations

import onnxruntime as ort


def session(data: bytes, *, optimize: bool = False) -> ort.InferenceSession:
    """One thread; no graph optimizations unless asked (they may flip one-step QDQ roundings)."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
