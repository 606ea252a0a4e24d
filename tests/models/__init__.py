"""The real models: detection, embedding, calibration, analysis."""
