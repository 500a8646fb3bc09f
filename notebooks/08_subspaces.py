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
# # Perturbation subspaces: which directions does each model care about?
#
# **Question.** Two models can be equally sensitive and still be sensitive to *different* image
# directions. The 2025 paper {cite:p}`mcneal2025targeted` characterises each model's local geometry by its **perturbation
# subspace**: to first order a perturbation $\delta$ changes the predicted voxel responses by
# $\Delta r \approx J\delta$, with $J = \partial r / \partial x$ the Jacobian of the model at the image,
# so $\|\Delta r\|^2 \approx \delta^\top J^\top J \delta$ and the unit-norm perturbations that change
# the responses most are the top eigenvectors of $J^\top J$, i.e. the top right singular vectors of
# $J$ {cite:p}`berardino2017eigendistortions,duong2023plenoptic`
# (talk slides "Stack the directions in a matrix, forming a perturbation subspace"). The paper
# compares the top-$k$ subspaces $P_i, P_j$ of models by $\mathrm{Sim}(P_i, P_j)$ and reports that
# standard models have **distinct** failure modes while robust models share directions.
#
# This chapter regenerates the model-by-model subspace-similarity matrix (averaged over images), its
# summary by model group, and pictures of the top singular vectors.
#
# **Outputs: voxels, not ROI means.** The Jacobian needs several output units: its rank is at most
# the number of outputs, so with one ROI mean there is a single direction (the gradient) and with
# the 3-4 ROI means jointly only 3-4 directions, dominated by what the ROIs share. The paper's
# Jacobian is that of a region's *voxel* responses, so here each model gets a ridge readout
# {cite:p}`hoerl1970ridge` per
# voxel (data loaded with `average_subjects=False`), and $J$ has one row per voxel of the `n_units`
# most reliable voxels of the ROI (highest noise ceiling, all simulated subjects pooled): $k$ is
# much smaller than the number of rows, as in the paper.
#
# **Similarity.** $\mathrm{Sim}(P_i, P_j) = \|P_i^\top P_j\|_F^2 / k$, the mean squared cosine of
# the principal angles {cite:p}`bjorck1973numerical` between the two subspaces (`probelib.geometry.subspace_similarity`): 1 for the
# same subspace, and $k/D$ on average for random $k$-dimensional subspaces of the $D = 3 H W$ pixel
# space (the chance level). **Demo substitutions** as in chapter 6: small-scale adversarial
# fine-tuning (`probelib.zoo.DEMO_ROBUST`, L-inf 16/255) stands in for the robust ResNet-50s
# {cite:p}`salman2020adversarially`, MobileNet-v2 {cite:p}`sandler2018mobilenetv2` /
# EfficientNet-Lite0 {cite:p}`tan2019efficientnet` (real weights) and untrained networks
# for the 14 networks, the simulated observer for NSD {cite:p}`allen2022massive`.

# %% [markdown]
# ````{admonition} Run this chapter with other parameters
# :class: tip
#
# The cell below holds the chapter's parameters and their defaults. From the repository root,
# `-p NAME VALUE` sets one of them (the value is read as a Python literal), for example to run the
# chapter on the Natural Scenes Dataset with a GPU:
#
# ```bash
# .venv/bin/python scripts/execute_notebooks.py 08 \
#     -p dataset nsd -p nsd_root /data/nsd -p device cuda
# ```
#
# This writes `book/generated/08_subspaces.ipynb`, from which
# `jupyter-book build book` renders this page.
# ````

# %% tags=["parameters"]
dataset = "demo"        # demo (embedded, offline) or nsd (needs nsd_root)
nsd_root = None         # local copy of the NSD bucket, for dataset nsd
models = None           # list of model specs; None = the panel of probelib.zoo.model_panel for paper 2
rois = ["FFA", "PPA", "EBA"]  # ROIs whose voxel Jacobians are analysed (the paper's three)
k = 5                   # dimension of each perturbation subspace
n_units = 32            # voxels spanning the Jacobian: the most reliable of the ROI
eps = 5.0               # L2 budget of the paper for 224 px images, for the first-order change
device = "cpu"          # cuda on a GPU machine
seed = 0
image_size = 64         # pixels per side of the stimuli fed to the models
n_images = 24           # test images at which the Jacobians are taken
n_samples = 16          # noise draws of each smoothed model (cost grows in proportion)
n_show = 3              # singular vectors shown as images per model
quick = False           # small parameters for the test suite

# %% tags=["hide-input"]
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from probelib.data import load_dataset, probe_images
from probelib.fitting import fit_panel
from probelib.metrics import high_frequency_fraction, response_sd
from probelib.plotting import amplify, log_matrix, savefig, show_image
from probelib.probes.budgets import scale_eps
from probelib.probes.cached import panel_subspaces
from probelib.tables import group_means, model_groups
from probelib.zoo import model_panel
from probelib import findings
from IPython.display import Markdown, display

torch.manual_seed(seed)
models = list(models) if models is not None else list(model_panel(dataset, paper=2))
if quick:
    image_size, n_images, n_units, k, n_samples, n_show = 64, 3, 8, 3, 2, 2
    models = models[:1] + [m + ("@2" if "+adv" in m else "") for m in models if "+adv" in m or "+smooth" in m][:1]
    rois = rois[:1]
groups = model_groups(models)
group_of = {m: g for g, ms in groups.items() for m in ms}
print("models:", groups)


def short(name: str) -> str:
    """Compact model label for matrix axes."""
    return (name.replace("efficientnet_lite0", "effnet-lite0").replace("mobilenet_v2", "mobilenet-v2")
            .replace(":untrained", " (untr.)").replace("+smooth", " σ=").replace("+adv", " adv"))


# %% tags=["hide-input"]
dsv = load_dataset(dataset, nsd_root=nsd_root, image_size=image_size, seed=seed, average_subjects=False)
fitv = fit_panel(dsv, models, rois, kind="ridge", device=device, seed=seed, n_samples=n_samples,
                 progress=False)
idx = probe_images(dsv, n_images, seed=seed)
units = {}
for roi in rois:
    nc = np.asarray(dsv.noise_ceiling[roi])
    units[roi] = np.sort(np.argsort(-nc)[: min(n_units, len(nc))])
    r = fitv.table().query("roi == @roi").groupby("model", sort=False)["r"].median()
    print(f"{roi}: {len(nc)} voxels, Jacobian rows = {len(units[roi])} most reliable "
          f"(noise ceiling {nc[units[roi]].min():.2f}-{nc[units[roi]].max():.2f}); "
          f"median held-out r of the voxel readouts: " + ", ".join(f"{short(m)} {v:.2f}" for m, v in r.items()))
print(f"{len(idx)} test images, k = {k}, D = {3 * image_size ** 2} pixels: "
      f"chance similarity k/D = {k / (3 * image_size ** 2):.1e}")

# %% [markdown]
# ## Subspaces and their similarity
#
# For each model, ROI and image: one forward pass and one backward pass per voxel give $J$
# (`n_units` x $D$); the top-$k$ right singular vectors come from the eigen-decomposition of the small
# matrix $J J^\top$ (`probelib.geometry.perturbation_subspace`, exact). Similarities are computed
# per image and then averaged over images ({numref}`fig-08-subspace_similarity`).

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-08-subspace_similarity", "caption": "Similarity of the top-k perturbation subspaces (mean squared cosine of the principal angles) of every pair of models, mean over test images, per ROI, on this run's data (the embedded demo in this book), from voxel readouts of the ROI's most reliable voxels. Log colour scale; labels: multiples of the chance level k/D."}}
panels = {roi: panel_subspaces(fitv, models, roi, idx, k, units=units[roi], device=device, progress=False)
          for roi in rois}
sims = {roi: panels[roi].similarity() for roi in rois}          # (N, M, M) per ROI

fig, axes = plt.subplots(1, len(rois), figsize=(0.75 * len(models) * len(rois) + 2.5, 0.7 * len(models) + 2),
                         squeeze=False)
for ax, roi in zip(axes[0], rois):
    chance = panels[roi].chance
    log_matrix(ax, sims[roi].mean(0), [short(m) for m in models], [short(m) for m in models],
               label=lambda i, j, v: "1" if i == j else f"{v / chance:.2g}×", vmax=0,
               colorbar_label="log10 mean squared cosine of principal angles")
    ax.set_title(f"{roi}: Sim(P_i, P_j), k = {k}; labels: multiples of chance k/D = {chance:.1e}",
                 fontsize=9)
fig.suptitle(f"Perturbation-subspace similarity between models, mean over {len(idx)} images")
fig.tight_layout()
savefig(fig, "08_subspace_similarity")
plt.show()

# %% [markdown]
# {numref}`fig-08-group_similarity` summarises the same matrix by model group (pairs of different
# models only; error bars: SEM over images). The dotted line is the chance level $k/D$.
#
# **Verdict rule, fixed before the result** (the paper: robust models share perturbation subspaces,
# standard models do not): per image, the mean similarity of robust-robust pairs minus that of
# standard-standard pairs, averaged over the ROIs. **Reproduced** if it is above 0 by a one-sided
# paired Wilcoxon signed-rank test over images (p < .05); **opposite** if below by the same test;
# otherwise **not reproduced**. Both robust models here are fine-tuned from the two standard
# networks, so the comparison "a network and its own fine-tuned version" is printed separately.

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-08-group_similarity", "caption": "Perturbation-subspace similarity by pair of model groups (pairs of different models only), per ROI, on this run's data (the embedded demo in this book). Bars: mean over model pairs and test images, with SEM error bars over images; dotted line: chance level k/D; log scale."}}
tabs = []
for roi in rois:
    t = group_means(sims[roi], models, groups)
    t.insert(0, "roi", roi)
    tabs.append(t)
gtab = pd.concat(tabs, ignore_index=True)
gtab["pair"] = gtab["from"] + " – " + gtab["to"]
fig, axes = plt.subplots(1, len(rois), figsize=(3.8 * len(rois) + 0.5, 3.6), squeeze=False, sharey=True)
for ax, roi in zip(axes[0], rois):
    d = gtab[gtab.roi == roi]
    cols = ["tab:red" if p == "standard – standard" else "tab:blue" if p == "robust – robust" else "0.6"
            for p in d.pair]
    ax.bar(range(len(d)), d["mean"], yerr=d["sem"].fillna(0), color=cols, edgecolor="k", lw=0.5, capsize=3)
    ax.axhline(panels[roi].chance, color="k", ls=":", lw=1, label="chance k/D")
    ax.set_xticks(range(len(d)), d.pair, rotation=40, ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.set_title(roi)
axes[0, 0].set_ylabel("subspace similarity\n(mean over pairs)")
axes[0, 0].legend(fontsize=8)
fig.suptitle("Shared perturbation directions within and between model groups", y=1.02)
fig.tight_layout()
savefig(fig, "08_group_similarity")
plt.show()

# %% tags=["hide-input"]
print(gtab[["roi", "from", "to", "mean", "sem", "n_pairs"]].round(4).to_string(index=False))
for roi in rois:
    d = gtab[gtab.roi == roi].set_index("pair")["mean"]
    if "standard – standard" in d and "robust – robust" in d:
        print(f"\n{roi}: robust (fine-tuned) models share {d['robust – robust']:.3f} of their top-{k} subspaces "
              f"with each other, standard models {d['standard – standard']:.3f} "
              f"(chance {panels[roi].chance:.1e}).")

    # same network with and without fine-tuning vs different networks
    same, diff = [], []
    s = sims[roi].mean(0)
    for i, a in enumerate(models):
        for j, b in enumerate(models):
            if i < j and {group_of[a], group_of[b]} == {"standard", "robust"}:
                (same if a.split("+")[0] == b.split("+")[0] else diff).append(s[i, j])
    if same and diff:
        print(f"{roi}: a network and its own fine-tuned version share {np.mean(same):.3f}; "
              f"a standard and a fine-tuned model of different networks {np.mean(diff):.3f}.")
if {"standard", "robust"} <= set(groups) and len(groups["standard"]) > 1 and len(groups["robust"]) > 1:
    block = {}
    for g in ("standard", "robust"):
        ii = [models.index(m) for m in groups[g]]
        pairs_g = [(a, b) for a in ii for b in ii if a < b]
        block[g] = np.mean([[sims[roi][:, a, b] for a, b in pairs_g] for roi in rois], axis=(0, 1))  # (N,)
    v_sub = findings.paired(block["robust"], block["standard"], expect="greater",
                            what="robust-robust - standard-standard similarity")
    v_sub.detail = (f"robust-robust {block['robust'].mean():.3g}, standard-standard {block['standard'].mean():.3g}, "
                    f"chance {panels[rois[0]].chance:.1e}")
    print(f"\nP2-subspace: {v_sub.sentence}")
    display(Markdown(f"**Verdict of this run** (rule stated above): robust models share more of their perturbation "
                     f"subspaces than standard models do: **{v_sub.verdict}** (robust-robust minus standard-standard "
                     f"similarity {v_sub.value:.2g}, 95% CI {v_sub.ci[0]:.2g} to {v_sub.ci[1]:.2g}; {v_sub.detail})."))
    if dataset == "demo":
        findings.record("08", "P2-subspace", v_sub,
                        stand_in="MobileNet-v2 / EfficientNet-Lite0 (+adv16 as robust stand-ins); simulated observer",
                        demo=f"perturbation-subspace similarity (k = {k}, {n_units} voxels), robust-robust minus "
                             f"standard-standard pairs, mean over {', '.join(rois)}")
else:
    print("\nP2-subspace: not tested (needs at least two standard and two robust models)")

# %% [markdown]
# ### Similarity as a function of the subspace dimension
#
# The bases are nested (the top-$j$ directions for any $j \le k$), so the similarity can be read
# off for every dimension up to $k$ at no extra cost ({numref}`fig-08-similarity_vs_k`); chance grows
# as $j/D$.

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-08-similarity_vs_k", "caption": "Perturbation-subspace similarity against the subspace dimension j (top-j singular vectors) in the first ROI, mean over the model pairs of each pair of groups and over test images, on this run's data (the embedded demo in this book). Dotted line: chance level j/D; log scale."}}
roi = rois[0]
P = panels[roi]
pairs_by_group = {}
for i, a in enumerate(models):
    for j, b in enumerate(models):
        if i < j:
            label = " – ".join(sorted([group_of[a], group_of[b]]))
            pairs_by_group.setdefault(label, []).append(P.similarity_by_dimension(a, b))
fig, ax = plt.subplots(figsize=(5, 3.6))
for label, values in pairs_by_group.items():
    ax.plot(range(1, P.k + 1), np.mean(values, axis=(0, 1)), marker="o", label=label)
ax.plot(range(1, P.k + 1), np.arange(1, P.k + 1) / P.bases.shape[2], "k:", label="chance j/D")
ax.set_xticks(range(1, P.k + 1))
ax.set_yscale("log")
ax.set_xlabel("subspace dimension j (top-j singular vectors)")
ax.set_ylabel("subspace similarity")
ax.set_title(f"{roi}: similarity vs dimension, by pair of groups")
ax.legend(fontsize=7)
savefig(fig, "08_similarity_vs_k")
plt.show()

# %% [markdown]
# ## Singular values: how strongly each direction moves the voxels
#
# The $j$-th singular value is the first-order change of the voxel-response vector (L2 over the
# `n_units` voxels) per unit L2 norm of pixel change along the $j$-th direction. Multiplied by the
# paper's budget (scaled to the image size) and divided by the typical spread of the voxels'
# observed responses, it is a first-order sensitivity comparable with chapter 6
# ({numref}`fig-08-singular_values`): robust models
# should have smaller singular values.

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-08-singular_values", "caption": "First-order RMS change of the voxel responses along each of the top-k singular directions (the singular value times the scaled L2 budget, in s.d. of the voxels' observed responses), mean over test images, for every model in the first ROI, on this run's data (the embedded demo in this book); log scale."}}
eps_px = scale_eps(eps, image_size)
fig, ax = plt.subplots(figsize=(5, 3.6))
sv_rows = []
for m_i, m in enumerate(models):
    sd = float(np.sqrt(np.mean(response_sd(dsv.responses[roi])[units[roi]] ** 2)))
    s = P.singular_values[m_i] * eps_px / sd / np.sqrt(len(units[roi]))   # RMS over voxels
    c = {"standard": "tab:red", "robust": "tab:blue", "untrained": "0.55"}[group_of[m]]
    ls = ["-", "--", ":", "-."][sum(group_of[x] == group_of[m] for x in models[:m_i]) % 4]
    ax.plot(range(1, P.k + 1), s.mean(0), marker="o", color=c, ls=ls, label=short(m))
    sv_rows.append({"model": m, "group": group_of[m], "first-order change (top direction)": s[:, 0].mean()})
ax.set_yscale("log")
ax.set_xticks(range(1, P.k + 1))
ax.set_xlabel("singular direction j")
ax.set_ylabel("eps · s_j / (√U · s.d.)")
ax.set_title(f"{roi}: first-order RMS voxel change at eps = {eps:g} (224 px units)")
ax.legend(fontsize=7)
savefig(fig, "08_singular_values")
plt.show()

# %% tags=["hide-input"]
pd.DataFrame(sv_rows).round(3)

# %% [markdown]
# ## What the directions look like
#
# {numref}`fig-08-directions` shows the top singular vectors of each model at one image, each
# amplified to fill the display
# range (grey = no change). Standard models' directions tend to look like high-frequency noise;
# adversarial training is expected to make them smoother and more image-like.

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-08-directions", "caption": "The top perturbation directions (right singular vectors of the Jacobian) of every model at the first test image, first ROI, on this run's data (the embedded demo in this book), each amplified to fill the display range (grey: no change)."}}
pos = 0
img = dsv.stimuli[idx[pos]]
fig, axes = plt.subplots(len(models), n_show + 1, figsize=(1.9 * (n_show + 1), 1.9 * len(models)), squeeze=False)
for r_i, m in enumerate(models):
    if r_i == 0:
        show_image(axes[0, 0], img, "image")
    else:
        axes[r_i, 0].set_axis_off()
    axes[r_i, 0].text(-0.08, 0.5, short(m), transform=axes[r_i, 0].transAxes, ha="right", va="center",
                      fontsize=9)
    dirs = P.directions(m, pos)
    for j in range(n_show):
        show_image(axes[r_i, j + 1], amplify(dirs[j]), f"v{j + 1}" if r_i == 0 else None)
fig.suptitle(f"{roi}: top-{n_show} perturbation directions per model (amplified)")
fig.tight_layout()
savefig(fig, "08_directions")
plt.show()

# %% [markdown]
# A simple measure of "noise-likeness": the fraction of a direction's energy at high spatial
# frequencies (above half the Nyquist frequency), averaged over images and the top directions.

# %%
hf = pd.DataFrame([{"model": m, "group": group_of[m],
                    "high-frequency power": np.mean([high_frequency_fraction(P.directions(m, n)[j])
                                                     for n in range(len(idx)) for j in range(P.k)])}
                   for m in models])
print(hf.round(3).to_string(index=False))
g = hf.groupby("group")["high-frequency power"].mean()
if {"standard", "robust"} <= set(g.index):
    print(f"\nHigh-frequency share of the top-{k} directions: standard {g['standard']:.2f}, "
          f"robust (adversarially fine-tuned) {g['robust']:.2f}.")

# %% [markdown]
# ## How this compares with the paper
#
# - The paper reports that standard models have distinct perturbation subspaces (low similarity
#   across architectures) while robust models share directions. The verdict printed with the group
#   summary is computed by the rule stated before it, against the chance level $k/D$. All
#   similarities are small in absolute terms: the subspaces are a handful of directions in a space
#   of $D$ pixel dimensions, so even a large multiple of chance is a small fraction of the subspace.
# - The demo's robust stand-ins are the *same two networks*, adversarially fine-tuned on the demo's
#   training photographs (chapter 4): part of any similarity between a fine-tuned model and its
#   standard network is shared weights, which the comparison "own network vs other network" printed
#   above separates. In the paper the robust models are ResNet-50s adversarially trained on
#   ImageNet, and the standard panel spans many architectures.
# - Whether a model's directions are *brain-like* is tested in chapter 10 against the simulated
#   observer's own subspace.
