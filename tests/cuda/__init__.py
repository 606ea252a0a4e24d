"""ONNX Runtime's CUDA provider (skipped without onnxruntime-gpu and a GPU)."""
