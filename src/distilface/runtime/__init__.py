"""Runtime: streaming animation (`streaming`, torch or onnxruntime), the torch streaming step
(`step`), ONNX export (`export`) and the onnxruntime-only model (`ort`). See docs/runtime.md.

Nothing is imported here, so `distilface.runtime.streaming` and `distilface.runtime.ort` load
without torch."""
