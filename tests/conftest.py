import pytest
import torch


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small tensors: one thread is faster, and far faster while another job keeps the cores busy."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def codec():
    """The shipped MSE codec (a test module may define its own ``codec``)."""
    from helpers.codec.leaf_codec import LeafCodec

    return LeafCodec()


@pytest.fixture(scope="module")
def leaf():
    """One test-split leaf (a synthetic one without PlantVillage)."""
    from codec_samples import leaves

    return leaves(1)[0]
