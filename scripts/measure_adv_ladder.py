"""Measure the demo's adversarial robustness ladders (``probelib.zoo.demo_ladder``).

For each network (MobileNet-v2, EfficientNet-Lite0) and each rung (the standard network and its
``+adv<k>`` fine-tunings), on the demo at the book's image size (64 px) with a ridge readout of
the FFA ROI-mean response fitted on the training split (refitted per rung):

- ``fgsm``: FGSM (L-inf, ``--eps``/255, "decrease") sensitivity, mean over ``--n-images`` held-out
  images (``probe_images``, stratified), in s.d. of the observed held-out responses; ``fgsm_all``:
  the same over every held-out image;
- ``pgd``: PGD (L-inf, same budget, 10 steps) sensitivity, same images and units;
- ``r``: held-out Pearson r of the readout;
- ``label``: fraction of held-out photographs (64 px) whose clean ImageNet top-1 label is that of
  the standard network; ``label5``: fraction whose standard top-1 label is among the rung's top 5;
- ``feat``: relative change of the encoder features ``||f(x + d) - f(x)|| / ||f(x)||`` under a
  5-step PGD (L-inf, same budget) attack on the features, mean over the held-out images;
- ``train_s``: wall-clock seconds to build the rung (its training stage: lower stages are
  cached by the rung below; 0 when already cached).

Then checks the target: along each ladder ``fgsm`` falls monotonically and the top rung is at most
half the standard network's. Exit status 1 if it does not hold.

    python scripts/measure_adv_ladder.py                       # both ladders, a fresh cache
    python scripts/measure_adv_ladder.py --bases mobilenet_v2 --budgets 0 4 8 --cache .cache
    python scripts/measure_adv_ladder.py lr=5e-4 attack_steps=2  # override the training schedule
    python scripts/measure_adv_ladder.py --device cuda --json ladder.json

Training is timed in a fresh cache directory unless ``--cache DIR`` is given (then cached rungs
cost nothing). ``--threads`` (default 1) torch threads, as in the book's chapter kernels.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _schedule_overrides(items: list[str]) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"expected KEY=VALUE schedule overrides; got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v.lower() if v.lower() in ("true", "false") else v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def feature_change(enc, x: torch.Tensor, eps: float) -> float:
    """Mean ||f(x + d) - f(x)|| / ||f(x)|| under a 5-step L-inf PGD on the features (seeded)."""
    from probelib import adversarial_training as at
    enc = enc.eval()
    with torch.no_grad():
        clean = enc(x)
    d = at._attack(enc, x, clean, None, eps, at.AdvSchedule(attack_steps=5), torch.Generator().manual_seed(0))
    with torch.no_grad():
        return float(((enc(x + d) - clean).flatten(1).norm(dim=1) / clean.flatten(1).norm(dim=1)).mean())


def measure(args) -> list[dict]:
    from probelib import probes, zoo
    from probelib.fitting import fit_units, response_units
    from probelib.probes.cached import probe_units
    from probelib.tables import unit_sensitivity_frame
    from probelib.data import load_dataset, probe_images
    from probelib.metrics import response_sd

    if args.overrides:
        zoo.DEMO_ADV_SCHEDULE = zoo.DEMO_ADV_SCHEDULE.replace(**args.overrides)
    print(f"schedule per stage: {zoo.DEMO_ADV_SCHEDULE}; curriculum from {zoo.DEMO_ADV_FIRST:g}/255",
          flush=True)
    dev = torch.device(args.device)
    ds = load_dataset("demo", image_size=zoo.DEMO_ADV_IMAGE_SIZE, seed=args.seed)
    units = response_units(ds, [args.roi])
    index = probe_images(ds, args.n_images, seed=args.seed)
    test = np.asarray(ds.split["test"])
    sd = response_sd(units.responses[test])[0]
    eps = args.eps / 255
    x_test = torch.as_tensor(ds.stimuli[test]).to(dev)
    rows = []
    for base in args.bases:
        ref_labels = None
        for spec in zoo.demo_ladder(base, args.budgets):
            t0 = time.perf_counter()
            enc = zoo.build_encoder(spec, device=dev, seed=args.seed, progress=args.progress)
            train_s = time.perf_counter() - t0
            fit = fit_units(ds, spec, units, kind="ridge", seed=args.seed, device=dev, encoder=enc)
            fgsm = unit_sensitivity_frame(fit, probe_units(fit, index, eps), index).relative.mean()
            fgsm_all = unit_sensitivity_frame(fit, probe_units(fit, test, eps), test).relative.mean()
            pgd = probes.pgd(fit.model, torch.as_tensor(ds.stimuli[index]), eps, norm="linf", steps=10,
                             device=dev, store_perturbations=False, progress=False)
            with torch.no_grad():
                logits = torch.cat([enc.classify(x_test[i:i + 32]) for i in range(0, len(test), 32)])
            labels, top5 = logits.argmax(1), logits.topk(5, dim=1).indices
            ref_labels = labels if ref_labels is None else ref_labels
            row = {"network": base, "spec": spec, "budget": zoo.parse_spec(spec).adv,
                   "fgsm": float(fgsm), "fgsm_all": float(fgsm_all),
                   "pgd": float(np.mean(pgd.sensitivity) / sd), "r": float(np.nanmean(fit.predictivity)),
                   "label": float((labels == ref_labels).float().mean()),
                   "label5": float((top5 == ref_labels[:, None]).any(1).float().mean()),
                   "feat": feature_change(enc, x_test, eps), "train_s": train_s}
            rows.append(row)
            print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}),
                  flush=True)
    return rows


def table(rows: list[dict], n_images: int, eps: float) -> str:
    head = (f"| network | rung | FGSM {eps:g}/255 ({n_images} img) | FGSM (all held-out) | PGD-10 | "
            "held-out r | label agreement top-1 (top-5) | feature change | train (s) |")
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        lines.append(f"| {r['network']} | {r['budget']:g}/255 | {r['fgsm']:.3f} | {r['fgsm_all']:.3f} | "
                     f"{r['pgd']:.3f} | {r['r']:.3f} | {r['label']:.2f} ({r['label5']:.2f}) | {r['feat']:.3f} | "
                     f"{r['train_s']:.0f} |")
    return "\n".join(lines)


def check(rows: list[dict]) -> bool:
    ok = True
    for base in dict.fromkeys(r["network"] for r in rows):
        s = [r["fgsm"] for r in rows if r["network"] == base]
        mono = all(b < a for a, b in zip(s, s[1:]))
        half = s[-1] <= 0.5 * s[0]
        ok &= mono and half
        print(f"{base}: FGSM sensitivity {' > '.join(f'{v:.3f}' for v in s)}: "
              f"{'monotone fall' if mono else 'NOT monotone'}; top / standard = {s[-1] / s[0]:.2f} "
              f"({'<=' if half else '>'} 0.5)")
    return ok


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("overrides", nargs="*", help="schedule overrides KEY=VALUE (AdvSchedule fields)")
    p.add_argument("--bases", nargs="+", default=["mobilenet_v2", "efficientnet_lite0"])
    p.add_argument("--budgets", nargs="+", type=float, default=None, help="default: zoo.DEMO_BUDGETS")
    p.add_argument("--roi", default="FFA")
    p.add_argument("--eps", type=float, default=3.0, help="probe budget in units of 1/255")
    p.add_argument("--n-images", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cache", default=None, help="cache directory (default: a fresh temporary one)")
    p.add_argument("--progress", action="store_true", help="progress bars of the training")
    p.add_argument("--json", default=None, help="write the rows here")
    args = p.parse_args(argv)
    args.overrides = _schedule_overrides(args.overrides)
    torch.set_num_threads(args.threads)
    from probelib import zoo
    args.budgets = list(zoo.DEMO_BUDGETS) if args.budgets is None else args.budgets
    with tempfile.TemporaryDirectory(prefix="advladder-") as tmp:
        os.environ["PROBELIB_CACHE"] = args.cache or tmp
        t0 = time.perf_counter()
        rows = measure(args)
        total = time.perf_counter() - t0
    print()
    print(table(rows, args.n_images, args.eps))
    print(f"\ntraining: {sum(r['train_s'] for r in rows):.0f} s in all; whole measurement {total:.0f} s "
          f"({args.threads} thread(s), device {args.device}, load average {os.getloadavg()[0]:.1f})")
    ok = check(rows)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "overrides": args.overrides,
                                               "threads": args.threads, "device": args.device}, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
