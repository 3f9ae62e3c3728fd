"""Process settings: the allocator and the split of a host's cores."""

import sys

import pytest
import torch


def test_threads_are_split_so_a_host_is_never_oversubscribed():
    from n2n_core.inference.runtime import split_threads

    for total in range(1, 17):
        alone, train = split_threads(total, False)
        beside, train_beside = split_threads(total, True)
        assert alone == total and train == train_beside >= 1
        assert beside >= 1 and (beside + train_beside <= total or total == 1)
    assert split_threads(8, True, train_threads=6) == (2, 6)
    assert split_threads(8, True, train_threads=99) == (1, 7)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is a Linux matter")
def test_the_allocator_is_tuned_on_glibc():
    from n2n_core.inference.runtime import tune_allocator

    assert tune_allocator() is True


def test_serial_thread_makes_only_the_calling_thread_serial():
    import threading

    from n2n_core.inference.runtime import serial_thread

    before = torch.get_num_threads()
    seen = {}

    def worker():
        serial_thread()
        seen["threads"] = torch.get_num_threads()

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == {"threads": 1}
    assert torch.get_num_threads() == before  # OpenMP's and MKL's counts are per thread
