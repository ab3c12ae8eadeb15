import pytest
import torch


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small tensors: one thread is faster, and far faster while another job keeps the cores busy."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
