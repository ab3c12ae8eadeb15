"""The study: one evaluation loop for every codec, the classical baselines, metrics, tables, figures, reports,
notebook 04's visual measures, diagnosis after compression, ONNX export and parity, benchmarks, the notebook
runner and the Colab set-up."""
