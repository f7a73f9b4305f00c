"""How torch's CPU threads behave: wait passively, and no more threads than a tiny model can use.

OpenMP threads that spin while waiting for work (libgomp's default before it sleeps) stall a CPU run
30-100x as soon as another process wants the same cores: the spinning threads and the one doing the work
take turns. ``OMP_WAIT_POLICY=PASSIVE`` makes idle threads sleep; OpenMP reads it once, when torch loads
it, so it must be set before ``import torch``. An explicit setting of the user's is kept.

Floating-point results depend on the number of threads (reductions split differently), so runs compare
bit for bit only at the same ``OMP_NUM_THREADS``.
"""

from __future__ import annotations

import os

#: Threads beyond this speed up the demo's and the tests' tiny models no further.
TINY_MODEL_MAX_THREADS = 4


def use_passive_wait() -> None:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless the user set it; effective only before torch is imported."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def limit_threads_for_tiny_models(max_threads: int = TINY_MODEL_MAX_THREADS) -> None:
    """Cap torch's intra-op threads at ``max_threads`` unless ``OMP_NUM_THREADS`` says how many to use."""
    if "OMP_NUM_THREADS" in os.environ:
        return
    import torch

    torch.set_num_threads(min(torch.get_num_threads(), max_threads))
