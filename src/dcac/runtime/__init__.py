"""dcac.runtime: how dcac behaves in the process that runs it: torch's CPU threads (``cpu_threads``, set before
torch is imported) and which exceptions are reported in one line instead of a traceback (``user_errors``).

Nothing here imports torch on import.
"""
