"""``dcac push`` when the Hub cannot be reached (no network, ``HF_HUB_OFFLINE`` unset): one line naming the
repository and what is needed, not the HTTP client's traceback (issue 22, item 15).

The Hub endpoint is pointed at a local port nobody listens on, so the connection is really refused (the same
``ConnectError`` as a machine without network) whatever network the test machine has.
"""

from __future__ import annotations

import socket

import pytest

from dcac.cli import main


@pytest.fixture
def unreachable_hub(monkeypatch):
    constants = pytest.importorskip("huggingface_hub.constants")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free once closed: connecting to it is refused
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("HF_TOKEN", "hf_test_token_never_sent_anywhere")


def test_push_without_network_is_one_line(unreachable_hub, tiny_run, capsys):
    assert main(["push", str(tiny_run), "me/dcac-demo"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("dcac ")]
    assert len(lines) == 1, err
    assert f"pushing {tiny_run} to me/dcac-demo failed" in lines[0] and "network access" in lines[0], lines[0]
