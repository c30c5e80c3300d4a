"""Fixtures shared by the video tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def one_thread():
    """Pin torch to one thread for an end-to-end run: on a shared 2-core machine a second OpenMP
    thread competing with other jobs makes these tiny models many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
