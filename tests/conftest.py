"""Test-wide settings: OpenMP threads wait passively (set before anything imports torch), tiny thread count."""

from dcac.cpu_threads import limit_threads_for_tiny_models, use_passive_wait

use_passive_wait()
limit_threads_for_tiny_models()
