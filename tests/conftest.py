import pytest


@pytest.fixture(autouse=True)
def _single_thread(single_thread):
    """Every engine test moves tiny tensors: run them on one torch thread (see trickbag.testing)."""
    yield
