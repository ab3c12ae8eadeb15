"""The product: what compresses and decompresses a .leaf file (model interface and architectures, latent coding,
container, tiling, budgets, level search, image reading, atomic writing, checkpoint loading, ONNX Runtime
decoding, the command line). It imports nothing from training, the study or the data pipeline
(tests/test_layout.py)."""
