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
# # Encoding models: a pretrained network plus a linear readout
#
# An ANN-based encoding model predicts the fMRI response of each voxel to an image in two steps:
# a pretrained network $f$ turns the image into the features of one intermediate layer, and a
# linear readout $g$ fitted on training images maps those features to voxel responses,
# $\hat r(x) = g(f(x))$. Both papers build every model this way; they differ in the networks,
# the layer and the readout. This chapter builds one such model and checks each part:
#
# 1. the network really has its ImageNet weights {cite:p}`russakovsky2015imagenet`
#    (it recognises objects in real photographs);
# 2. a ridge readout {cite:p}`hoerl1970ridge` fitted on training images predicts held-out responses, up to the noise
#    ceiling of the data.

# %% [markdown]
# ````{admonition} Run this chapter with other parameters
# :class: tip
#
# The cell below holds the chapter's parameters and their defaults. From the repository root,
# `-p NAME VALUE` sets one of them (the value is read as a Python literal), for example to run the
# chapter on the Natural Scenes Dataset with a GPU:
#
# ```bash
# .venv/bin/python scripts/execute_notebooks.py 01 \
#     -p dataset nsd -p nsd_root /data/nsd -p device cuda
# ```
#
# This writes `book/generated/01_encoding_models.ipynb`, from which
# `jupyter-book build book` renders this page.
# ````

# %% tags=["parameters"]
dataset = "demo"        # demo (embedded, offline) or nsd (needs nsd_root)
nsd_root = None         # local copy of the NSD bucket, for dataset nsd
encoder_name = "mobilenet_v2"
roi = "FFA"
image_size = 128        # pixels per side of the stimuli fed to the models
device = "cpu"          # "cuda" on a GPU machine
seed = 0
quick = False           # small parameters for the test suite

# %% tags=["hide-input"]
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

import probelib as pl
from probelib.data import load_dataset
from probelib.metrics import pearson_r
from probelib.plotting import savefig, show_image

torch.manual_seed(seed)
if quick:
    image_size = 64

# %% [markdown]
# ## The network and its weights
#
# `load_encoder` returns an `nn.Module` that takes images with pixels in $[0, 1]$ (the
# normalisation the network was trained with lives inside) and returns the flattened features of
# the chosen layer. It reports where its weights came from, and exposes the network's ImageNet
# classifier so that anyone can check the weights are the real ones.

# %%
encoder = pl.load_encoder(encoder_name, device=device)
print(f"{encoder.name}, layer {encoder.layer}")
print("weights:", encoder.weights_source)

# %%
ds = load_dataset(dataset, nsd_root=nsd_root, image_size=image_size, seed=seed)
print(ds.name, "|", ds.n_images, "images | ROIs:", {r: v.shape[1] for r, v in ds.responses.items()})

# %% [markdown]
# The classifier runs at the networks' native 224 pixels on a few of the photographs of objects;
# {numref}`fig-01-classification` shows the two labels it finds most probable for each.

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-01-classification", "caption": "The two most probable ImageNet labels, with their softmax probabilities, that the encoder's own classifier gives a few photographs shown at the network's native resolution: object photographs of the embedded demo in this book, or stimuli of the dataset when the chapter runs on NSD. A check that the network carries its real ImageNet weights."}}
labels = pl.imagenet_labels()
rng = np.random.default_rng(seed)
n_show = 4 if quick else 8
if dataset == "demo":
    from probelib.data.demo import load_demo_stimuli
    photos, cats, _ = load_demo_stimuli(224)
    pick = rng.choice([i for i, c in enumerate(cats) if c == "object"], n_show, replace=False)
    x224 = torch.as_tensor(photos[pick]).to(device)
else:
    pick = rng.choice(ds.n_images, n_show, replace=False)
    x224 = F.interpolate(torch.as_tensor(ds.stimuli[pick]), size=224, mode="bilinear",
                         antialias=True).clamp(0, 1).to(device)
with torch.no_grad():
    probs = encoder.classify(x224).softmax(-1).cpu()
fig, axes = plt.subplots(1, n_show, figsize=(2.1 * n_show, 2.6))
for ax, img, p in zip(axes, x224.cpu(), probs):
    top = p.topk(2)
    show_image(ax, img, "\n".join(f"{labels[i][:16]} {v:.2f}" for v, i in zip(top.values, top.indices)))
fig.suptitle(f"{encoder_name}: top-2 ImageNet labels")
savefig(fig, "01_classification")
plt.show()

# %% [markdown]
# ## A ridge readout, fitted on training images only
#
# Features of the chosen layer are computed once (and cached on disk). The ridge penalty is chosen
# per voxel by exact leave-one-out cross-validation *within the training images* (the criterion of
# scikit-learn's `RidgeCV` {cite:p}`pedregosa2011scikit`); the test images
# are used only to evaluate the prediction.

# %%
train, test = ds.split["train"], ds.split["test"]
Y = ds.responses[roi]
model = pl.fit_encoding_model(encoder, ds.stimuli[train], Y[train], kind="ridge", seed=seed,
                              device=device)
pred = model.predict(ds.stimuli[test])
r = pearson_r(pred, Y[test])
ceiling = ds.noise_ceiling.get(roi)
alphas = model.readout.hparams["alpha"]
print(f"{roi}: {Y.shape[1]} voxel(s); alpha per voxel in [{alphas.min():.3g}, {alphas.max():.3g}]")
print(f"held-out Pearson r: median {np.median(r):.3f}"
      + (f" | noise ceiling: median {np.median(ceiling):.3f}" if ceiling is not None else ""))

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-01-predicted_vs_observed", "caption": "Predicted against observed response of the chosen ROI (the ROI mean, or its best-predicted voxel) for every held-out image, on this run's data (the embedded demo in this book), from the ridge readout fitted on the training images only. Dotted line: x = y; the title gives the held-out Pearson R."}}
v = int(np.argmax(r)) if Y.shape[1] > 1 else 0
fig, ax = plt.subplots(figsize=(4, 4))
ax.scatter(pred[:, v], Y[test, v], s=18, alpha=0.8)
lo = min(pred[:, v].min(), Y[test, v].min())
hi = max(pred[:, v].max(), Y[test, v].max())
ax.plot([lo, hi], [lo, hi], "k:", lw=1)
ax.set_xlabel("predicted response")
ax.set_ylabel("observed response")
ax.set_title(f"{encoder_name} -> {roi} (voxel {v}), held-out images: R = {r[v]:.2f}")
savefig(fig, "01_predicted_vs_observed")
plt.show()

# %% [markdown]
# In {numref}`fig-01-predicted_vs_observed` each dot is one held-out image; the dotted line is $x = y$. The held-out correlations printed
# above are what this run computed; for the NSD data {cite:p}`allen2022massive` the papers report correlations close to the
# noise ceiling for every network (the next chapters compare networks).
