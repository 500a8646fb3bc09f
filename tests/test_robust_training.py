"""Adversarial fine-tuning (probelib.adversarial_training) on a tiny schedule: MobileNet-v2 with its
real weights truncated at features.4, 16 px photographs, a few steps."""
import os
import warnings

import numpy as np
import pytest
import torch

from probelib import adversarial_training as at
from probelib.cache import module_key
from probelib.encoders import Encoder, load_encoder

TINY = at.AdvSchedule(steps=3, batch_size=4, lr=1e-3, attack_steps=1)


@pytest.fixture(scope="module")
def base():
    return load_encoder("mobilenet_v2", layer="features.4")


@pytest.fixture(scope="module")
def photos():
    from probelib.data.demo import load_demo_stimuli
    images, _, _ = load_demo_stimuli(16)
    return images[::4]  # 43 photographs, every category


def _equal(a: Encoder, b: Encoder) -> bool:
    sa, sb = a.net.state_dict(), b.net.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture
def count_training(monkeypatch):
    calls = []
    train = at._train

    def counted(*args, **kwargs):
        calls.append(args[3])  # the budget
        return train(*args, **kwargs)

    monkeypatch.setattr(at, "_train", counted)
    return calls


def test_training_is_deterministic_and_changes_the_network(base, photos):
    a = at.adversarial_finetune(base, photos[:8], 4 / 255, TINY, seed=1, cache=False)
    b = at.adversarial_finetune(base, photos[:8], 4 / 255, TINY, seed=1, cache=False)
    assert _equal(a, b)
    assert not _equal(a, base)
    # an Encoder like the others: same layer, normalisation, output; the base is left as it was
    assert isinstance(a, Encoder) and a.layer == base.layer and not a.spatial
    assert torch.equal(a.mean, base.mean) and torch.equal(a.std, base.std)
    assert not a.training and not any(p.requires_grad for p in a.parameters())
    assert not any(p.requires_grad for p in base.parameters())
    x = torch.as_tensor(photos[:2])
    assert a(x).shape == base(x).shape
    assert module_key(a) != module_key(base)


def test_training_uses_one_cpu_thread_whatever_the_caller_set(base, photos, monkeypatch):
    """The weights must not depend on the machine's core count: training runs on one thread on
    the CPU and the caller's thread count is restored after (also after an error)."""
    seen = []
    loop = at._train_loop

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return loop(*args, **kwargs)

    monkeypatch.setattr(at, "_train_loop", spy)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = at.adversarial_finetune(base, photos[:8], 4 / 255, TINY, seed=3, cache=False)
        assert torch.get_num_threads() == 2
        torch.set_num_threads(1)
        one = at.adversarial_finetune(base, photos[:8], 4 / 255, TINY, seed=3, cache=False)
        assert seen == [1, 1] and _equal(one, two)
        torch.set_num_threads(2)
        monkeypatch.setattr(at, "_train_loop", lambda *a, **k: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            at.adversarial_finetune(base, photos[:8], 4 / 255, TINY, seed=3, cache=False)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_every_input_changes_weights_and_key(base, photos):
    ref = at.adversarial_finetune(base, photos[:8], 4 / 255, TINY, seed=0, cache=False)
    variants = {
        "budget": dict(eps=8 / 255),
        "seed": dict(seed=1),
        "images": dict(images=photos[8:16]),
        "schedule": dict(schedule=TINY.replace(jitter=0.0)),
        "start": dict(init=ref),
    }
    key0 = at.training_key(base, base, torch.as_tensor(photos[:8]), 4 / 255, TINY, 0)
    for what, change in variants.items():
        args = dict(images=photos[:8], eps=4 / 255, schedule=TINY, seed=0, init=base) | change
        key = at.training_key(base, args["init"], torch.as_tensor(args["images"]), args["eps"],
                              args["schedule"], args["seed"])
        assert key != key0 and at.weights_path(key) != at.weights_path(key0), what
        if what in ("budget", "seed", "images"):
            other = at.adversarial_finetune(base, cache=False, **args)
            assert not _equal(other, ref), what
            assert module_key(other) != module_key(ref), what


def test_cache_reuses_weights_and_retrains_on_change(base, photos, count_training):
    a = at.adversarial_finetune(base, photos[:8], 4 / 255, TINY)
    b = at.adversarial_finetune(base, photos[:8], 4 / 255, TINY)
    assert len(count_training) == 1 and _equal(a, b)
    c = at.adversarial_finetune(base, photos[:8], 2 / 255, TINY)
    assert len(count_training) == 2 and not _equal(a, c)
    files = list((at.weights_path({}).parent).glob("*"))
    assert len(files) == 2 and all(f.suffix == ".safetensors" for f in files)  # no pickles, no temp files
    # the device is not part of the key
    assert _equal(at.adversarial_finetune(base, photos[:8], 4 / 255, TINY, device="cpu"), a)
    assert len(count_training) == 2


@pytest.mark.parametrize("damage", ["truncate", "garbage", "other_key"])
def test_damaged_cache_file_is_retrained(base, photos, count_training, damage):
    good = at.adversarial_finetune(base, photos[:8], 4 / 255, TINY)
    key = at.training_key(base, base, torch.as_tensor(photos[:8]), 4 / 255, TINY, 0)
    path = at.weights_path(key)
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00" * 64 + data[64:])
    else:  # a complete file written for other inputs (renamed by hand, say)
        other = at.training_key(base, base, torch.as_tensor(photos[:8]), 2 / 255, TINY, 0)
        at.adversarial_finetune(base, photos[:8], 2 / 255, TINY)
        os.replace(at.weights_path(other), path)
    with pytest.warns(UserWarning, match="ignoring the cached"):
        again = at.adversarial_finetune(base, photos[:8], 4 / 255, TINY)
    assert _equal(again, good)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        at.adversarial_finetune(base, photos[:8], 4 / 255, TINY)  # the rewritten file is good
    assert count_training.count(4 / 255) == 2


def test_interrupted_training_or_write_leaves_no_file(base, photos, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(at, "_train", interrupted)
        with pytest.raises(KeyboardInterrupt):
            at.adversarial_finetune(base, photos[:8], 4 / 255, TINY)
    import safetensors.torch

    def partial_write(state, path, metadata=None):
        with open(path, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", partial_write)
    with pytest.raises(OSError, match="disk full"):
        at.adversarial_finetune(base, photos[:8], 4 / 255, TINY)
    assert list(at.weights_path({}).parent.iterdir()) == []


def test_curriculum_reuses_its_stages(base, photos, count_training):
    assert at.curriculum_budgets(16 / 255, 4 / 255) == pytest.approx([4 / 255, 8 / 255, 16 / 255])
    assert at.curriculum_budgets(6 / 255, 4 / 255) == pytest.approx([6 / 255])
    assert at.curriculum_budgets(8 / 255) == pytest.approx([8 / 255])
    lo = at.curriculum(base, photos[:8], 4 / 255, TINY, first=4 / 255)
    hi = at.curriculum(base, photos[:8], 8 / 255, TINY, first=4 / 255)
    assert count_training == pytest.approx([4 / 255, 8 / 255])  # 8/255 continued the cached 4/255
    assert _equal(lo, at.adversarial_finetune(base, photos[:8], 4 / 255, TINY))
    assert not _equal(hi, at.adversarial_finetune(base, photos[:8], 8 / 255, TINY))  # not from scratch


def _feature_change(enc: Encoder, x: torch.Tensor, eps: float) -> float:
    """Mean relative feature change ||f(x + d) - f(x)|| / ||f(x)|| under a 5-step PGD (L-inf) attack."""
    with torch.no_grad():
        clean = enc(x)
    d = at._attack(enc, x, clean, None, eps, at.AdvSchedule(attack_steps=5), torch.Generator().manual_seed(0))
    with torch.no_grad():
        return float(((enc(x + d) - clean).norm(dim=1) / clean.norm(dim=1)).mean())


def test_trained_features_are_more_robust(base, photos):
    """A real (small) property: after adversarial fine-tuning at 8/255, a held-out photograph's
    features change less under an L-inf attack than those of the standard network."""
    train, held_out = photos[:32], torch.as_tensor(photos[32:])
    robust = at.adversarial_finetune(base, train, 8 / 255, at.AdvSchedule(steps=6, batch_size=8, lr=1e-3,
                                                                          attack_steps=1), cache=False)
    before, after = _feature_change(base, held_out, 4 / 255), _feature_change(robust, held_out, 4 / 255)
    assert after < 0.8 * before, (before, after)


def test_argument_errors(base, photos):
    with pytest.raises(ValueError, match="eps must be in"):
        at.adversarial_finetune(base, photos[:8], 8)  # 8 instead of 8/255
    with pytest.raises(ValueError, match="Encoder"):
        at.adversarial_finetune(torch.nn.Conv2d(3, 3, 1), photos[:8], 4 / 255)
    with pytest.raises(ValueError, match="pixels in"):
        at.adversarial_finetune(base, photos[:8] * 255, 4 / 255)
    with pytest.raises(ValueError, match="same layer"):
        at.adversarial_finetune(base, photos[:8], 4 / 255, init=load_encoder("mobilenet_v2"))
    with pytest.raises(ValueError, match="steps"):
        at.AdvSchedule(steps=0)
    with pytest.raises(ValueError, match="unknown norm"):
        at.AdvSchedule(norm="l2")
    with pytest.raises(ValueError, match="lr"):
        at.AdvSchedule(lr=-1.0)
    with pytest.raises(ValueError, match="seed"):
        at.adversarial_finetune(base, photos[:8], 4 / 255, TINY, seed=-1)


def test_tqdm_disable_is_honoured(monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert at._progress_disabled(None) is True
    assert at._progress_disabled(True) is False
    monkeypatch.delenv("TQDM_DISABLE")
    assert at._progress_disabled(None) is None


def test_augmentation_is_seeded_and_in_range(photos):
    x = torch.as_tensor(photos[:6])
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    a, b = at._augment(x, g(), TINY), at._augment(x, g(), TINY)
    assert torch.equal(a, b) and a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    assert not torch.equal(a, at._augment(x, torch.Generator().manual_seed(4), TINY))
    plain = at._augment(x, g(), TINY.replace(crop=1.0, flip=False, jitter=0.0))
    assert torch.allclose(plain, x, atol=1e-5)  # identity when every augmentation is off
    assert np.isfinite(a.numpy()).all()
