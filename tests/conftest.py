"""Setup for the whole test session, loaded before any test module is imported.

Without a GPU, the fused Triton kernels in ops/triton/ run on CPU tensors under
Triton's interpreter. Triton picks interpreter or compiler when it is first
imported (its own @triton.jit library functions, tl.sum and tl.min among them,
are built then), and torch imports triton as a side effect of torch._dynamo, so
the switch has to be set here, before any test module can import either. It
only changes how Triton kernels run; torch.compile on CPU does not use Triton.
On a GPU machine it stays unset and tests/ops runs the compiled kernel on CUDA.
"""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture
def one_thread():
    """One torch thread for tests of tiny tensors: a second thread only adds contention there."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
