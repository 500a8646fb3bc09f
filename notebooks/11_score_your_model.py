# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Score your own model
#
# The previous chapters asked the papers' questions {cite:p}`mcneal2024small,mcneal2025targeted`
# of the networks the papers used. A lab with a
# network of its own will want the same answers for it:
#
# 1. **Predictivity.** How well does a readout of one of its layers predict held-out responses of
#    FFA {cite:p}`kanwisher1997fusiform`, PPA {cite:p}`epstein1998cortical`, EBA
#    {cite:p}`downing2001cortical` and VWFA {cite:p}`cohen2000visual`, relative to the noise ceiling
#    (chapter 2)?
# 2. **Adversarial sensitivity.** How far does a tiny targeted perturbation move that prediction,
#    for single-step (FGSM {cite:p}`goodfellow2015explaining`) and iterative (PGD
#    {cite:p}`madry2018towards`) probes at several budgets, compared with the same
#    perturbation with its pixels shuffled and with random noise of the same size (chapters 3-4)?
# 3. **Transfer.** Do the model's probes move the responses of the "brain" (on the demo: the
#    simulated observer that generated the data; on NSD {cite:p}`allen2022massive`: other models) (chapter 7)?
# 4. **Local coding axes.** Does the model's perturbation subspace (the image directions that change
#    its voxel predictions most) agree with those of other models and of the observer (chapter 8)?
#
# `probelib.score` answers all four in one call, for any network: a name of the book's registry,
# `"torchvision:<builder>"`, `"timm:<name>"`, a Python file with a factory (`"mymodel.py:build"`),
# or an `nn.Module` object, read out at a layer you name. It returns a table with one row per
# (model, ROI), the reference panel's rows next to it, and every number with a 95 % confidence
# interval over the probed images. Results are cached by the network's *content* (code, settings,
# weights), so a second call is instant and two different networks never share results.
#
# This chapter scores a network that is not in the registry and that needs no download: an
# **untrained ResNet-18 from timm** {cite:p}`he2016deep,wightman2019timm` (any architecture of
# torchvision {cite:p}`torchvision2016` or timm builds offline without
# weights; with a weights file, pass `weights=PATH`).

# %% [markdown]
# ````{admonition} Run this chapter with other parameters
# :class: tip
#
# The cell below holds the chapter's parameters and their defaults. From the repository root,
# `-p NAME VALUE` sets one of them (the value takes the type of the default), for example to score
# another network:
#
# ```bash
# .venv/bin/python scripts/execute_notebooks.py 11 \
#     -p model torchvision:resnet18 -p layer layer3
# ```
#
# This writes `book/generated/11_score_your_model.ipynb`, from which
# `jupyter-book build book` renders this page.
# ````

# %% tags=["parameters"]
model = "timm:resnet18"  # any network: registry name, torchvision:<builder>, timm:<name>, file.py:factory
layer = "layer3"         # the layer read out (a wrong name gets the list of valid ones)
weights = None           # None: untrained (offline), "default": weights found on this machine, or a path
dataset = "demo"         # demo (embedded, offline) or nsd (needs nsd_root)
nsd_root = None          # local copy of the NSD bucket, for dataset nsd
rois = None              # ROIs to score (None: all ROIs of the dataset)
budgets = None           # L-inf budgets, pixels in [0, 1] (None: 1/255, 2/255, 4/255)
reference = None         # reference panel of zoo names (None: the standard and most robust demo models)
image_size = 64          # pixels per side of the stimuli fed to the models
n_images = 5             # held-out images probed (one per category of the demo)
device = "cpu"           # cuda on a GPU machine
seed = 0
quick = False            # small parameters for the test suite

# %% tags=["hide-input"]
import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import display

import probelib as pl
from probelib.encoders import check_encoder, layer_names, load_encoder
from probelib.plotting import savefig
from probelib.scoring import default_reference, score_report

torch.manual_seed(seed)
options = {}
if quick:
    rois = rois or ["FFA", "PPA"]
    n_images = 2
    budgets = budgets or [2 / 255, 4 / 255]
    options = {"steps": 2, "n_units": 4, "n_subspace_images": 2}
    if reference is None and dataset == "demo":  # the robust rung with a 2-step training schedule
        reference = list(pl.zoo.demo_ladder("mobilenet_v2", (0, 16), steps=2))
reference = list(reference) if reference is not None else list(default_reference(dataset))
print("reference panel:", reference)

# %% [markdown]
# ## The network
#
# `load_encoder` is the one entry point for every kind of network. It reads the input
# normalisation from the weights' metadata where torchvision or timm provide it (ImageNet's
# otherwise, or `mean=` / `std=`), and `check_encoder` says plainly why a network does not fit
# (it does not take images of this size, the layer is never reached in the forward pass, or the
# features are not differentiable with respect to the image, which the probes need).

# %%
encoder = load_encoder(model, layer, weights=weights, seed=seed)
print(f"{encoder.name} at {encoder.layer}: {encoder.weights_source}")
print("normalisation: mean", np.round(encoder.mean.flatten().tolist(), 3), "std",
      np.round(encoder.std.flatten().tolist(), 3))
print("features per image at", image_size, "px:", check_encoder(encoder, image_size))
print("a few of its layers:", ", ".join(n for n in layer_names(encoder.net) if n.count(".") == 0))

# %% [markdown]
# ## One call
#
# `pl.score(model, layer, ...)` returns the table; `score_report` returns the same table together
# with the long tables behind the figures, and writes everything to a folder
# (`report.save("results/")`: `score.csv`, `score.md`, the figures and a one-page `report.html`).
# The command line does the same:
#
# ```bash
# probelib score --model timm:resnet18 --layer layer3 --weights none --dataset demo --out results/
# probelib models          # what loads offline here, and what needs weights
# ```

# %% tags=["hide-input"]
report = score_report(model, layer, weights=weights, dataset=dataset, nsd_root=nsd_root, rois=rois,
                      budgets=budgets, reference=reference, image_size=image_size, n_images=n_images,
                      device=device, seed=seed, **options)
table = report.table
print(f"{len(table)} rows (model x ROI), {len(table.columns)} columns; the first ones:")
display(table.iloc[:, :12].round(3))

# %% [markdown]
# The columns are tidy and self-describing: `pgd@4/255` is the mean PGD sensitivity at a budget of
# 4/255 (in s.d. of the observed responses across images), `pgd@4/255_lo` and `_hi` its 95 %
# confidence interval over the probed images; `shuffled@...` and `random@...` are the controls;
# `transfer:observer@...` what the model's PGD probes do to the observer; `subspace:<m>` the
# similarity of the perturbation subspaces. `report.summary()` shows the essentials:

# %%
display(report.summary())

# %% [markdown]
# ## Predictivity
#
# {numref}`fig-11-predictivity` compares the scored network's held-out predictivity with the
# reference panel's.

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-11-predictivity", "caption": "Held-out predictivity of the scored network (black) and of the reference panel per ROI, on this run's data (the embedded demo in this book), as a fraction of the noise ceiling where the data have one (held-out r otherwise)."}}
fig = report.figure_predictivity()
savefig(fig, "11_predictivity")
plt.show()

# %% [markdown]
# ## Adversarial sensitivity, against the reference panel
#
# In {numref}`fig-11-sensitivity` the thick black line is the scored network's PGD sensitivity, the dashed line its FGSM
# sensitivity; the coloured lines are the reference models' PGD sensitivities. The grey lines
# are the controls (the model's own FGSM perturbation with its pixels shuffled, and random noise
# of the same size): a targeted probe that moves the prediction far more than its controls
# exploits a direction the model is specifically sensitive to. The green markers show what the
# model's PGD probes (at the largest budget) do to the transfer target, next to random noise of
# the same size.

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-11-sensitivity", "caption": "Sensitivity against budget per ROI, on this run's data (the embedded demo in this book), in s.d. of the observed responses, mean and 95% confidence interval over the probed images: the scored network's PGD (thick black) and FGSM (dashed) probes, its controls (grey: its FGSM probes with pixels shuffled, random noise of the same size), the reference models' PGD probes (colours) and, in green, the change its PGD probes cause in the transfer target."}}
fig = report.figure_sensitivity()
savefig(fig, "11_sensitivity")
plt.show()

# %%
sections = report.sections()
display(sections["Adversarial sensitivity (s.d. of responses)"].query("model == @report.model"))
display(sections["Transfer of the PGD probes (s.d. of responses)"])

# %% [markdown]
# ## Local coding axes
#
# For each ROI, the Jacobian {cite:p}`berardino2017eigendistortions` of the predicted responses of its most reliable voxels is taken at
# a few probed images; its top right singular vectors span the model's perturbation subspace.
# The similarity of two subspaces is the mean squared cosine of their principal angles {cite:p}`bjorck1973numerical`: 1 for the
# same subspace, about $k/D$ (chance) for unrelated ones. {numref}`fig-11-subspace` shows the scored model's row
# of the model-by-model similarity matrix, as a multiple of chance.

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-11-subspace", "caption": "Similarity of the scored network's perturbation subspaces with those of the reference models (and, on the demo, of the simulated observer) per ROI, on this run's data (the embedded demo in this book), mean over the probed images; log colour scale, values and multiples of the chance level k/D printed."}}
fig = report.figure_subspace()
savefig(fig, "11_subspace")
plt.show()

# %% tags=["hide-input"]
display(sections["Perturbation-subspace similarity"])

# %% [markdown]
# ## Your own `nn.Module`, unchanged
#
# A network object works the same way. Below, the same architecture is built by hand with the
# same seed: its content (code, settings, weights) is the one scored above, so every expensive
# step is read back from the cache, although the object, its name and its mode differ. The
# network is left exactly as it was: scoring evaluates it in eval mode with frozen parameters and
# restores its mode and `requires_grad` flags; the layer hook exists only during a forward pass.

# %%
import timm  # noqa: E402

if model.startswith("timm:") and weights is None:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = timm.create_model(model.split(":", 1)[1], pretrained=False)
    net.train()  # left in training mode by its owner
    modes = [m.training for m in net.modules()]
    flags = [p.requires_grad for p in net.parameters()]
    state = {k: v.clone() for k, v in net.state_dict().items()}
    mine = pl.score(net, layer, name="my ResNet-18", dataset=dataset, nsd_root=nsd_root, rois=rois,
                    budgets=budgets, reference=reference, image_size=image_size, n_images=n_images,
                    device=device, seed=seed, **options)
    same = ["r", "r_over_nc"] + [c for c in table.columns if c.startswith(("pgd@", "fgsm@"))]
    unchanged = (modes == [m.training for m in net.modules()]
                 and flags == [p.requires_grad for p in net.parameters()]
                 and all(torch.equal(v, net.state_dict()[k]) for k, v in state.items())
                 and not any(m._forward_hooks for m in net.modules()))
    print("same numbers as the timm: string:",
          np.allclose(mine[same].to_numpy(float), table[same].to_numpy(float), equal_nan=True))
    print("the module is unchanged (modes, requires_grad, weights, no hooks):", unchanged)

# %% [markdown]
# ## Reading the result
#
# - **Predictivity does not tell networks apart on its own.** On the demo even an untrained
#   network's random features predict the ROI means well (chapter 2 shows the same for the book's
#   untrained controls).
# - **Sensitivity is a second, independent axis.** The targeted probes move the prediction by a
#   sizeable fraction of the responses' spread at budgets of a few grey levels, while the
#   controls of exactly the same size barely move it; the reference panel shows where a standard
#   and a robust network lie.
# - **Transfer and subspaces ask whether those sensitive directions are the brain's.** On the demo
#   the observer is the ground truth: probes that transfer to it, and subspaces aligned with its
#   own, are the "brain-like local coding axes" of the 2025 paper {cite:p}`mcneal2025targeted`. Values near chance say that the
#   model's most sensitive directions are its own.
#
# To score a trained network, point `weights` at its file (or place the file where
# `probelib models` says it is looked for); to score a network of your own, pass the module or
# `"path/to/file.py:factory"` and the layer to read out. On NSD (`dataset="nsd"`), the probes are
# transferred to the reference models instead of the observer.
