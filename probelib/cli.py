"""The ``probelib`` command: score a network, list the networks that load on this machine.

    probelib score --model timm:resnet18 --layer layer3 --weights none --dataset demo --out results/
    probelib score --model mymodel.py:build --layer block3 --out results/
    probelib models
    probelib --help, probelib score --help, probelib models --help

``probelib score`` runs :func:`probelib.scoring.score_report` and writes its tables (CSV and
Markdown), figures and a one-page HTML report to ``--out``. Nothing is downloaded.
"""
from __future__ import annotations

import math
import sys
from fractions import Fraction

import click

from . import __version__

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class _Budget(click.ParamType):
    """A budget: ``2/255``, ``0.0078`` or ``1e-2`` (pixels in [0, 1]; an L2 norm for --norm l2)."""

    name = "budget"

    def convert(self, value, param, ctx):
        if isinstance(value, float):
            return value
        try:
            out = float(Fraction(str(value).strip()))
        except (ValueError, ZeroDivisionError):
            self.fail(f"{value!r} is not a number or a fraction such as 2/255", param, ctx)
        if not math.isfinite(out) or out <= 0:
            self.fail(f"{value!r} must be > 0", param, ctx)
        return out


def _device(value: str | None) -> str | None:
    """``auto``: cuda when present, else the CPU; otherwise the value (``None``: where each network lives)."""
    if value == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return value or None


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, prog_name="probelib", message="%(prog)s %(version)s")
def main() -> None:
    """probelib: adversarial probing of fMRI encoding models (network features -> linear readout
    -> voxel responses in FFA, PPA, EBA and VWFA).

    Run `probelib COMMAND --help` for the options of a command.
    """


@main.command("score", context_settings=CONTEXT)
@click.option("--model", "-m", "model", required=True,
              help="The network: a registry or zoo name (mobilenet_v2, alexnet:untrained, "
                   "mobilenet_v2+smooth0.25), torchvision:<builder>, timm:<name>, or path/to/file.py:factory "
                   "(factory() returns an nn.Module). `probelib models` lists what loads here.")
@click.option("--layer", "-l", default=None,
              help="Layer whose features are read out (a name from net.named_modules()); required except "
                   "for registry names. A wrong one gets the list of valid layers.")
@click.option("--weights", "-w", default="default", show_default=True,
              help="'default' (published weights found on this machine; a file's network as built), "
                   "'none' (untrained, seeded) or a path to a state dict / checkpoint.")
@click.option("--name", default=None, help="Label of the model in the tables (default: --model).")
@click.option("--dataset", "-d", type=click.Choice(["demo", "nsd"]), default="demo", show_default=True,
              help="The embedded demo, or the Natural Scenes Dataset from --nsd-root.")
@click.option("--nsd-root", type=click.Path(exists=True, file_okay=False), default=None,
              help="Local copy of the NSD bucket (for --dataset nsd).")
@click.option("--roi", "rois", multiple=True, help="ROI to score (repeatable; default all: FFA EBA PPA VWFA).")
@click.option("--readout", type=click.Choice(["ridge", "ols", "lasso", "mlp"]), default="ridge",
              show_default=True, help="Readout fitted from the layer's features to each ROI.")
@click.option("--budget", "-b", "budgets", multiple=True, type=_Budget(),
              help="Perturbation budget, e.g. 2/255 (repeatable). Default: 1/255 2/255 4/255 (linf), "
                   "0.5 1 2 at 64 px (l2).")
@click.option("--norm", type=click.Choice(["linf", "l2"]), default="linf", show_default=True,
              help="Norm of the budgets.")
@click.option("--steps", type=click.IntRange(min=1), default=5, show_default=True, help="PGD steps.")
@click.option("--direction", type=click.Choice(["decrease", "increase", "abs"]), default="decrease",
              show_default=True, help="Which change of the response a probe seeks.")
@click.option("--reference", "-r", "reference", multiple=True,
              help="Reference model (repeatable): a zoo name or <model>@<layer>, or 'none'. Default: the "
                   "demo's standard and most robust models (NSD: the papers' standard and robust ResNet-50).")
@click.option("--transfer-to", "transfer_to", multiple=True,
              help="Where the model's PGD probes are transferred: 'observer' (demo) and/or reference "
                   "names (repeatable), or 'none'. Default: the observer on the demo, else the references.")
@click.option("--no-observer", is_flag=True,
              help="On the demo, leave out the comparisons with the simulated observer (faster).")
@click.option("--image-size", type=click.IntRange(min=8), default=64, show_default=True,
              help="Side in pixels of the images fed to the networks.")
@click.option("--n-images", type=click.IntRange(min=2), default=5, show_default=True,
              help="Held-out images probed (stratified by category on the demo).")
@click.option("--device", default=None,
              help="cpu, cuda, cuda:1 ... or auto (cuda when present). Default: where each network lives "
                   "(the CPU for networks built here).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds data split, fits and probes.")
@click.option("--out", "-o", type=click.Path(file_okay=False), default="results", show_default=True,
              help="Directory for score.csv, score.md, curves.csv, subspaces.csv, the figures and report.html.")
@click.option("--format", "formats", multiple=True, type=click.Choice(["png", "svg", "pdf"]),
              default=("png",), show_default=True, help="Figure format (repeatable).")
@click.option("--no-cache", is_flag=True,
              help="Compute everything afresh (nothing read from or written to the cache).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary table.")
def score_command(model, layer, weights, name, dataset, nsd_root, rois, readout, budgets, norm, steps, direction,
          reference, transfer_to, no_observer, image_size, n_images, device, seed, out, formats, no_cache,
          quiet):
    """Score a network the papers' way and write the tables, figures and an HTML report.

    For each ROI: held-out predictivity (r and r / noise ceiling); FGSM and PGD sensitivity per budget
    with a 95% CI over images, next to shuffled-pixel and random-noise controls; transfer of the PGD
    probes (to the demo's observer); and the similarity of the model's perturbation subspaces to a
    reference panel. Results are cached by content: a second run is instant.

    \b
    Examples:
      probelib score --model timm:resnet18 --layer layer3 --weights none --out results/
      probelib score --model torchvision:mobilenet_v2 --layer features.14 --budget 1/255 --budget 4/255
      probelib score --model mymodel.py:build --layer block3 --device cuda
    """
    from .scoring import score_report

    weights_arg = None if weights.lower() in ("none", "untrained") else weights

    def listed(values):
        values = list(values)
        if not values:
            return None
        return [] if [v.lower() for v in values] == ["none"] else values
    try:
        report = score_report(
            model, layer, dataset=dataset, nsd_root=nsd_root, rois=list(rois) or None, readout=readout,
            budgets=list(budgets) or None, norm=norm, steps=steps, direction=direction,
            reference=listed(reference), transfer_to=listed(transfer_to), observer=not no_observer,
            image_size=image_size, n_images=n_images, device=_device(device), seed=seed, weights=weights_arg,
            name=name, progress=not quiet, cache=not no_cache)
    except (ValueError, FileNotFoundError, KeyError) as err:
        raise click.ClickException(str(err).strip("'\"")) from None
    written = report.save(out, formats=formats)
    if not quiet:
        import pandas as pd

        with pd.option_context("display.width", 200, "display.max_columns", 30):
            click.echo(report.summary().to_string(index=False))
    click.echo(f"wrote {len(written)} files to {out}/: " + ", ".join(sorted(written)))


@main.command(context_settings=CONTEXT)
@click.option("--hub", "hubs", multiple=True, type=click.Choice(["torchvision", "timm"]),
              help="Also list this hub's architectures and pretrained weights (repeatable).")
@click.option("--found", "only_found", is_flag=True, help="Only the networks whose trained weights are here.")
def models(hubs, only_found):
    """List the networks that load on this machine, and what is missing for the others.

    Registry names load with their default layer; `torchvision:<builder>` and `timm:<name>` need
    --layer. Every architecture loads untrained (--weights none) offline; trained weights load
    when their file is on this machine (nothing is downloaded).
    """
    from .encoders import HUBS, weights_status

    rows = weights_status(hubs)
    if only_found:
        rows = [r for r in rows if r["weights"] == "found"]
    width = max([len(r["name"]) for r in rows] + [4])
    for kind in ("registry", *HUBS):
        part = [r for r in rows if r["kind"] == kind]
        if not part:
            continue
        found = sum(r["weights"] == "found" for r in part)
        click.echo(f"\n{kind} ({found} of {len(part)} with weights on this machine)")
        for r in part:
            layer = f" [layer {r['default_layer']}]" if r["default_layer"] else ""
            status = "ok     " if r["weights"] == "found" else "missing"
            click.echo(f"  {r['name']:<{width}}  {status}  {r['where']}{layer}")
    if not hubs:
        click.echo("\nAlso: torchvision:<builder> and timm:<name> (any architecture of those libraries, "
                   "untrained offline; `probelib models --hub timm --hub torchvision` lists them), zoo "
                   "variants <name>:untrained and <name>+smooth<sigma>, and path/to/file.py:factory.")


from .study.cli import run_command  # noqa: E402  (the study layer's command: probelib run)

main.add_command(run_command)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
