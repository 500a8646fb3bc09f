"""Loading weights or cached results never executes code from a file we did not write."""
from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import torch

from probelib import cache
from probelib.encoders import load_encoder, load_weights_file
from probelib.model import extract_features


class _Payload:
    """Unpickling this runs a shell command that creates a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _squeezenet_state(seed: int = 0) -> dict:
    return load_encoder("squeezenet1_1", weights=None, seed=seed).net.state_dict()


def test_malicious_checkpoint_is_refused_and_its_payload_never_runs(tmp_path):
    marker = tmp_path / "payload-ran"
    path = tmp_path / "model.pth"
    torch.save({"state_dict": _squeezenet_state(), "extra": _Payload(marker)}, path)
    with pytest.raises(ValueError, match=r"model\.pth holds '(posix|os)\.system'.*trust=True"):
        load_encoder("squeezenet1_1", weights=path)
    with pytest.raises(ValueError, match="not plain data"):
        load_weights_file(path)
    assert not marker.exists()


def test_trusted_checkpoint_with_other_objects_loads_only_when_asked(tmp_path):
    import argparse
    path = tmp_path / "with_args.pth"
    state = _squeezenet_state()
    torch.save({"state_dict": state, "args": argparse.Namespace(arch="squeezenet1_1")}, path)
    with pytest.raises(ValueError, match="argparse.Namespace"):
        load_encoder("squeezenet1_1", weights=path)
    enc = load_encoder("squeezenet1_1", weights=path, trust=True)
    torch.testing.assert_close(enc.net.state_dict()["features.0.weight"], state["features.0.weight"])


def test_real_checkpoint_formats_load_as_plain_data(tmp_path):
    """Each supported layout, as its library writes it, loads with weights_only=True."""
    from probelib.encoders import CORnetRT
    # torchvision / OpenCLIP / offline wheels: a plain state dict (.pth or .bin)
    state = _squeezenet_state(1)
    torch.save(state, tmp_path / "plain.bin")
    enc = load_encoder("squeezenet1_1", weights=tmp_path / "plain.bin")
    torch.testing.assert_close(enc.net.state_dict()["features.3.squeeze.weight"],
                               state["features.3.squeeze.weight"])
    # the robustness library: model (DataParallel + attacker copies), optimizer, schedule, epoch
    net = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net(torch.ones(1, 2)).sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=30)
    ckpt = {"model": {f"module.model.{k}": v for k, v in state.items()}
            | {f"module.attacker.model.{k}": v for k, v in state.items()}
            | {"module.normalizer.new_mean": torch.zeros(3, 1, 1)},
            "optimizer": opt.state_dict(), "schedule": sched.state_dict(), "epoch": 90,
            "prec1": np.float64(71.2)}
    torch.save(ckpt, tmp_path / "robust.ckpt")
    assert set(load_weights_file(tmp_path / "robust.ckpt")) == set(ckpt)
    # CORnet: a DataParallel state dict under "state_dict", with the optimizer
    torch.manual_seed(0)
    cornet = CORnetRT()
    torch.save({"epoch": 20, "arch": "CORnet_RT", "optimizer": opt.state_dict(),
                "state_dict": {f"module.{k}": v for k, v in cornet.state_dict().items()}},
               tmp_path / "cornet_rt.pth")
    enc = load_encoder("cornet_rt", weights=tmp_path / "cornet_rt.pth")
    torch.testing.assert_close(enc.net.V1.conv_input.weight, cornet.V1.conv_input.weight)


def test_safetensors_weights_load_without_pickle(tmp_path):
    from safetensors.torch import save_file
    state = _squeezenet_state(2)
    save_file(state, tmp_path / "model.safetensors")
    enc = load_encoder("squeezenet1_1", weights=tmp_path / "model.safetensors")
    torch.testing.assert_close(enc.net.state_dict()["features.0.weight"], state["features.0.weight"])
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(ValueError, match="bad.safetensors"):
        load_encoder("squeezenet1_1", weights=tmp_path / "bad.safetensors")


def test_cache_directory_is_private_and_a_shared_one_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv(cache.TRUST_SHARED, raising=False)
    fresh = tmp_path / "new-cache"
    monkeypatch.setenv("PROBELIB_CACHE", str(fresh))
    extract_features(torch.nn.Flatten(), torch.rand(2, 3, 4, 4))
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700
    shared = tmp_path / "shared-cache"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv("PROBELIB_CACHE", str(shared))
    with pytest.raises(cache.UnsafeCacheError, match="other accounts can write"):
        extract_features(torch.nn.Flatten(), torch.rand(2, 3, 4, 4))
    monkeypatch.setenv(cache.TRUST_SHARED, "1")  # a group cache the user vouches for
    assert extract_features(torch.nn.Flatten(), torch.rand(2, 3, 4, 4)).shape == (2, 48)
