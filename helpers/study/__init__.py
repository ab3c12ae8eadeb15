"""The study: one evaluation loop for every codec, the classical baselines, tables, figures, reports, notebook 04's
visual measures, diagnosis after compression, ONNX export and parity, benchmarks, the notebook runner and the Colab
set-up. The metrics it measures with are ``helpers.measures``'."""
