"""``dcac demo``: synthetic Re-ID domains (``synthetic``), a miniature pre-trained teacher (``teacher``) and
the demo itself, Baseline against DCAC on an unseen domain over seeds (``run``)."""
