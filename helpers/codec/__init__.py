"""The product: what compresses and decompresses a .leaf file (model interface and architectures, latent coding,
container, tiling, budgets, level search, image reading, atomic writing, checkpoint loading, ONNX Runtime
decoding, the command line). It imports nothing from training, the study or the data pipeline
(tests/test_layout.py)."""

import os as _os

# Transparent huge pages for PyTorch's large CPU buffers (read once, at torch's first allocation, so it must be set
# before torch is imported). Coding allocates each tile's activations afresh (tiling.return_freed_buffers_...),
# and on 4 KiB pages the page faults of those fresh buffers cost as much as GDN's arithmetic (measured: a
# 288x288x64 GDN 38.8 -> 19.2 ms). A user's own setting wins.
_os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

# CompressAI without its datasets and point-cloud transforms (3 s of every command's start): see lean_imports.
from helpers.codec.lean_imports import lean_compressai  # noqa: E402

lean_compressai()
