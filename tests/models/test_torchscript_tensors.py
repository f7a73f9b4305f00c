"""Reading a TorchScript archive's tensors without running its code (OpenAI's CLIP ``.pt`` is one)."""

import pickle
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from dcac.models.clip_weights import CLIPWeightsError, load_clip_vision_weights
from dcac.models.reid_encoder import CLIPReIDEncoder, ReIDEncoderConfig
from dcac.models.torchscript_tensors import TorchScriptReadError, read_torchscript_tensors

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")

VICTIM_TEXT = "hello world\n"


class _WritesOnLoad(nn.Module):
    """Its TorchScript ``__setstate__`` overwrites the first bytes of ``target`` when the archive is loaded."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(3, 2))
        self.register_buffer("seen", torch.zeros(()))
        self.target = target

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight

    @torch.jit.export
    def __getstate__(self) -> tuple[torch.Tensor, torch.Tensor, str, bool]:
        return (self.weight, self.seen, self.target, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[torch.Tensor, torch.Tensor, str, bool]) -> None:
        self.weight = state[0]
        self.seen = state[1]
        self.target = state[2]
        self.training = state[3]
        mapped = torch.from_file(self.target, shared=True, size=5, dtype=torch.uint8)
        mapped.fill_(88)
        self.seen = self.seen + mapped.sum()  # used, so the compiler keeps the write


class _Holder(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "victim.txt"
    victim.write_text(VICTIM_TEXT)
    return victim


def test_crafted_archive_writes_a_file_under_torch_jit_load_but_not_here(tmp_path):
    victim = _victim(tmp_path)
    archive = tmp_path / "ViT-B-16.pt"
    torch.jit.save(torch.jit.script(_WritesOnLoad(str(victim))), str(archive))
    torch.jit.load(str(archive))
    assert victim.read_text() != VICTIM_TEXT  # the archive really runs code when TorchScript loads it

    victim.write_text(VICTIM_TEXT)
    with pytest.raises(TorchScriptReadError, match="__setstate__"):
        read_torchscript_tensors(archive)
    encoder = CLIPReIDEncoder(ReIDEncoderConfig.tiny())
    with pytest.raises(CLIPWeightsError, match=r"ViT-B-16\.pt.*__setstate__"):
        load_clip_vision_weights(encoder, archive)
    assert victim.read_text() == VICTIM_TEXT


def test_an_archive_pickling_a_python_global_is_refused_without_calling_it(tmp_path):
    marker = tmp_path / "called"
    archive = tmp_path / "model.pt"
    torch.jit.save(torch.jit.script(_Holder()), str(archive))
    with zipfile.ZipFile(archive) as src:
        entries = {name: src.read(name) for name in src.namelist()}

    class CallsOut:
        def __reduce__(self):
            return (open, (str(marker), "w"))  # creates the marker file if called

    data_pkl = next(name for name in entries if name.endswith("/data.pkl"))
    entries[data_pkl] = pickle.dumps(CallsOut(), protocol=2)
    with zipfile.ZipFile(archive, "w") as dst:
        for name, data in entries.items():
            dst.writestr(name, data)
    with pytest.raises(TorchScriptReadError, match=r"model\.pt: refusing the pickled global .*open"):
        read_torchscript_tensors(archive)
    assert not marker.exists()


def test_tensors_equal_torch_jit_loads_state_dict(tmp_path):
    torch.manual_seed(0)
    root = _Holder()
    root.add_module("visual", _Holder())
    root.visual.add_module("block", _Holder())
    root.register_parameter("scale", nn.Parameter(torch.tensor(2.5)))
    root.visual.register_parameter("proj", nn.Parameter(torch.randn(4, 3).half(), requires_grad=False))
    root.visual.block.register_parameter("weight", nn.Parameter(torch.randn(5, 2, 3).to(torch.bfloat16)))
    root.visual.block.register_buffer("index", torch.arange(7))
    root.visual.register_buffer("mask", torch.rand(3, 3) > 0.5)
    archive = tmp_path / "tiny.pt"
    torch.jit.save(torch.jit.script(root), str(archive))

    expected = torch.jit.load(str(archive)).state_dict()
    got = read_torchscript_tensors(archive)
    assert got.keys() == expected.keys()
    for key, tensor in expected.items():
        assert got[key].dtype == tensor.dtype, key
        torch.testing.assert_close(got[key], tensor, rtol=0, atol=0, msg=key)
