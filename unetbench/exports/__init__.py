"""What leaves a finished run: its network back from disk and applied (``predict``), challenge
submissions, and model files for other tools (TorchScript, ONNX, bioimage.io)."""
