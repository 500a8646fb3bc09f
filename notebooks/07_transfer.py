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
# # Do models share their failure modes? Transfer of probes
#
# **Question.** A probe made on one encoding model moves that model's prediction a lot (chapter 6).
# Does it also move the predictions of *other* models? If the models shared their local coding
# directions (as a brain-like model should share them with the brain), probes would transfer; if
# each model's sensitive directions are its own idiosyncrasy, they would not.
#
# The 2025 paper {cite:p}`mcneal2025targeted` answers in two steps (talk slides "Which of these sensitive directions transfer to
# other models?" and "fix the transfer effect first"):
# 1. **Fixed budget.** Probes made on each source model at eps = 5 are applied to every target
#    model; the predicted change is compared with the target's own probe (target = source) and with
#    random noise of the same size (negative control). The paper reports that probes of standard
#    models barely transfer.
# 2. **Fixed effect.** Instead of fixing the size, each model gets the smallest probe that changes its
#    own prediction by a fixed amount. Robust models need much larger probes, and the paper reports
#    that *their* probes then transfer to all models ("possibly the brain-like coding axis").
#
# This chapter regenerates both transfer matrices, the norm-matched noise control and the budgets
# needed for a fixed effect. **Demo substitutions:** MobileNet-v2 {cite:p}`sandler2018mobilenetv2` and
# EfficientNet-Lite0 {cite:p}`tan2019efficientnet`
# adversarially fine-tuned at L-inf 16/255 (`probelib.zoo.DEMO_ROBUST`, the top of chapter 4's
# ladder) stand in for the robust ResNet-50s {cite:p}`salman2020adversarially`, MobileNet-v2 /
# EfficientNet-Lite0 (real weights) and untrained networks for the
# paper's panel, the simulated observer for NSD {cite:p}`allen2022massive` (see chapter 6 and the
# introduction).

# %% [markdown]
# ````{admonition} Run this chapter with other parameters
# :class: tip
#
# The cell below holds the chapter's parameters and their defaults. From the repository root,
# `-p NAME VALUE` sets one of them (the value is read as a Python literal), for example to run the
# chapter on the Natural Scenes Dataset with a GPU:
#
# ```bash
# .venv/bin/python scripts/execute_notebooks.py 07 \
#     -p dataset nsd -p nsd_root /data/nsd -p device cuda
# ```
#
# This writes `book/generated/07_transfer.ipynb`, from which
# `jupyter-book build book` renders this page.
# ````

# %% tags=["parameters"]
dataset = "demo"        # demo (embedded, offline) or nsd (needs nsd_root)
nsd_root = None         # local copy of the NSD bucket, for dataset nsd
models = None           # list of model specs; None = the panel of probelib.zoo.model_panel for paper 2
rois = ["FFA", "PPA", "EBA"]  # ROIs whose probes are transferred (the paper's three)
eps = 5.0               # fixed L2 budget of the paper for 224 px images; scaled to image_size
steps = 5               # PGD steps of the fixed-budget probes
device = "cpu"          # cuda on a GPU machine
seed = 0
image_size = 64         # pixels per side of the stimuli fed to the models
n_images = 24           # test images probed at the fixed budget; as in chapter 6 to share its probes
n_samples = 16          # noise draws of each smoothed model (cost grows in proportion)
target_change = 0.5     # fixed effect: response change to reach, in s.d. of the observed responses
fe_models = None        # sources of fixed-effect probes; None = the trained models, standard and robust
n_images_fe = 12        # images probed for the fixed effect, the first of the fixed-budget images
fe_steps = 3            # PGD steps per bisection trial of the fixed-effect search
fe_tol = 0.2            # relative precision of the fixed-effect budget
quick = False           # small parameters for the test suite

# %% tags=["hide-input"]
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from probelib.data import load_dataset, probe_images
from probelib.fitting import fit_panel
from probelib.probes.cached import panel_fixed_effect, panel_pgd
from probelib.metrics import response_sd
from probelib.plotting import amplify, log_matrix, savefig, show_image
from probelib.probes.budgets import fixed_effect_budget, l2_probe_settings, scale_eps
from probelib.probes.cached import panel_transfer
from probelib.probes.transfer import probe_deltas
from probelib.tables import group_means, model_groups
from probelib.zoo import model_panel
from probelib import findings
from IPython.display import Markdown, display

torch.manual_seed(seed)
models = list(models) if models is not None else list(model_panel(dataset, paper=2))
if quick:
    image_size, n_images, n_images_fe, steps, fe_steps, n_samples = 64, 4, 3, 3, 2, 2
    models = models[:1] + [m + ("@2" if "+adv" in m else "") for m in models if "+adv" in m or "+smooth" in m][:1]
    rois = rois[:1]
groups = model_groups(models)
group_of = {m: g for g, ms in groups.items() for m in ms}
if fe_models is None:
    fe_models = [m for m in models if group_of[m] in ("standard", "robust")] or models
fe_models = [m for m in models if m in fe_models]
eps_px = scale_eps(eps, image_size)
print("models:", groups)
print(f"fixed budget: L2 eps = {eps:g} at 224 px = {eps_px:.3f} at {image_size} px")

# %% tags=["hide-input"]
ds = load_dataset(dataset, nsd_root=nsd_root, image_size=image_size, seed=seed)
fit = fit_panel(ds, models, rois, kind="ridge", device=device, seed=seed, n_samples=n_samples,
                progress=False)
idx = probe_images(ds, n_images, seed=seed)
probe_kw = l2_probe_settings(image_size, eps=eps, steps=steps)
print(ds.name, "|", len(idx), "probed test images | ROIs:", rois)


# %% tags=["hide-input"]
def short(name: str) -> str:
    """Compact model label for matrix axes."""
    return (name.replace("efficientnet_lite0", "effnet-lite0").replace("mobilenet_v2", "mobilenet-v2")
            .replace(":untrained", " (untr.)").replace("+smooth", " σ=").replace("+adv", " adv"))


# %% [markdown]
# ## 1. Fixed budget: probes at eps = 5 applied to every model
#
# The probes are the iterative L2 probes {cite:p}`madry2018towards` of chapter 6 (same images and settings, so they come
# from the cache when chapter 6 has run). Entry (source, target) of the matrix in
# {numref}`fig-07-transfer_fixed_budget` is the mean absolute
# change of the target's predicted ROI response under the source's probes, divided by the s.d. of
# the observed responses across images; the diagonal is each model's own sensitivity. The bottom row
# is the control: random directions with the same L2 norm, applied to each target.

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-07-transfer_fixed_budget", "caption": "Transfer at a fixed budget, on this run's data (the embedded demo in this book): entry (source, target) is the mean over probed test images of the absolute change of the target's predicted ROI response under the source model's L2 probe, in s.d. of the observed responses (log colour scale). Diagonal: each model's own sensitivity; bottom row: random directions of the same norm."}}
fb = {}
for roi in rois:
    probes = {m: panel_pgd(fit, m, roi, image_index=idx, **probe_kw) for m in models}
    fb[roi] = panel_transfer(fit, roi, probes, idx, seed=seed)

fig, axes = plt.subplots(1, len(rois), figsize=(0.75 * len(models) * len(rois) + 2.5, 0.7 * len(models) + 2),
                         squeeze=False)
for ax, roi in zip(axes[0], rois):
    res, sd = fb[roi], float(response_sd(ds.responses[roi])[0])
    mat = np.vstack([res.matrix, res.control_matrix.mean(0, keepdims=True)]) / sd
    log_matrix(ax, mat, [short(m) for m in models] + ["random noise"], [short(m) for m in models],
               colorbar_label="log10 |Δr| / s.d.")
    ax.axhline(len(models) - 0.5, color="w", lw=2)
    ax.set_xlabel("target model")
    ax.set_ylabel("source of the probe")
    ax.set_title(f"{roi}: |Δr| / s.d. (log colour scale)")
fig.suptitle(f"Transfer at a fixed budget (L2 eps = {eps:g} at 224 px), mean over {len(idx)} images")
fig.tight_layout()
savefig(fig, "07_transfer_fixed_budget")
plt.show()

# %% [markdown]
# The talk summarises each source by three bars ({numref}`fig-07-transfer_bars`): the change it causes in its own model
# (target = source), the mean change it causes in the other models, and the change random noise
# of the same size causes. Transfer is measured relative to each target's own sensitivity, so that
# 1 means "moves the target as much as the target's own probe".
#
# **Verdict rule, fixed before the result** (the paper: probes of standard models barely transfer):
# per image, the change that standard sources' probes cause in the *other* models, relative to each
# target's own sensitivity, averaged over sources, targets and ROIs. **Reproduced** if it is below
# 0.5 (less than half of the targets' own sensitivity) by a one-sided Wilcoxon signed-rank test over
# images (p < .05); **opposite** if above 0.5 by the same test; otherwise **not reproduced**.

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-07-transfer_bars", "caption": "For every source model and ROI, on this run's data (the embedded demo in this book): the change its fixed-budget probes cause in its own model, the mean change they cause in the other models, and the change random noise of the same norm causes, each a mean over probed test images in s.d. of the observed responses (log scale)."}}
rows = []
for roi in rois:
    res, sd = fb[roi], float(response_sd(ds.responses[roi])[0])
    rel, ctrl_rel = res.relative, res.control_matrix / res.own[None, :]
    for s, src in enumerate(res.sources):
        others = [t for t, tgt in enumerate(res.names) if tgt != src]
        rows.append({"roi": roi, "source": src, "group": group_of[src],
                     "self": res.matrix[s, res.names.index(src)] / sd,
                     "others": res.matrix[s, others].mean() / sd,
                     "noise": res.control_matrix[s].mean() / sd,
                     "others_relative": rel[s, others].mean(), "noise_relative": ctrl_rel[s, others].mean()})
bars = pd.DataFrame(rows)
fig, axes = plt.subplots(1, len(rois), figsize=(0.9 * len(models) * len(rois) + 2, 3.6), squeeze=False)
for ax, roi in zip(axes[0], rois):
    d = bars[bars.roi == roi]
    x = np.arange(len(d))
    for k, (col, c, lab) in enumerate([("self", "k", "target = source"), ("others", "tab:orange", "other targets (mean)"),
                                       ("noise", "0.75", "random noise, same norm")]):
        ax.bar(x + (k - 1) * 0.27, d[col], 0.27, color=c, label=lab)
    ax.set_yscale("log")
    ax.set_xticks(x, [short(m) for m in d.source], rotation=40, ha="right", fontsize=8)
    ax.set_ylabel("|Δr| / s.d. of observed responses")
    ax.set_title(roi)
axes[0, -1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
fig.suptitle("Predicted change: own model vs other models vs noise (fixed budget)")
fig.tight_layout()
savefig(fig, "07_transfer_bars")
plt.show()

# %%
for roi in rois:
    res = fb[roi]
    rel_per_image = res.per_image / res.own[None, None, :]        # (N, S, T), 1 = as the target's own probe
    tab = group_means(rel_per_image, res.names, groups, symmetric=False)
    print(f"{roi}: transfer relative to the target's own sensitivity, by group (source -> target; "
          f"mean and SEM over {len(idx)} images, pairs of different models):")
    print(tab.round(3).to_string(index=False))
    d = bars[bars.roi == roi]
    print(f"{roi}: on average a probe moves the other models by {d.others_relative.mean():.1%} of their own "
          f"sensitivity; random noise of the same norm by {d.noise_relative.mean():.1%}.\n")
stand_in = "MobileNet-v2 / EfficientNet-Lite0 (+adv16 as robust stand-ins) and untrained controls; simulated observer"
chapter_verdicts = {}
if "standard" in groups:
    std_transfer = []
    for roi in rois:
        res = fb[roi]
        rel_img = res.per_image / res.own[None, None, :]  # (N, S, T)
        pairs_st = [(s_i, t_i) for s_i, src in enumerate(res.sources) if group_of[src] == "standard"
                    for t_i, tgt in enumerate(res.names) if tgt != src]
        std_transfer.append(np.mean([rel_img[:, s_i, t_i] for s_i, t_i in pairs_st], axis=0))
    v_std = findings.one_sample(np.mean(std_transfer, axis=0), expect="less", threshold=0.5,
                                what="transfer of standard-model probes (fraction of the target's own)")
    print(f"P2-transfer-std: {v_std.sentence}")
    chapter_verdicts["probes of standard models barely transfer (fixed budget)"] = v_std
    if dataset == "demo":
        findings.record("07", "P2-transfer-std", v_std, stand_in=stand_in,
                        demo="standard sources' fixed-budget probes: change in other models / their own sensitivity")

# %% [markdown]
# ### What the probes look like
#
# {numref}`fig-07-probe_examples` shows one probed image and each model's probe for it (amplified for display with one common scale: all
# probes have the same L2 norm). The talk contrasts the noise-like patterns of standard models with
# the structured patterns of robust ones.

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-07-probe_examples", "caption": "One probed test image (the one whose predictions the probes move most on average), on this run's data (the embedded demo in this book), and every model's L2 probe of the first ROI for it, amplified with one common scale; titles: the change of the model's own prediction."}}
roi = rois[0]
probes = {m: panel_pgd(fit, m, roi, image_index=idx, **probe_kw) for m in models}
pos = int(np.argmax([np.mean([probes[m].sensitivity[0, i, 0] for m in models]) for i in range(len(idx))]))
deltas = {m: probe_deltas(probes[m])[0, pos] for m in models}
scale = 0.5 / max(np.abs(d).max() for d in deltas.values())
fig, axes = plt.subplots(1, len(models) + 1, figsize=(1.9 * (len(models) + 1), 2.5))
show_image(axes[0], ds.stimuli[idx[pos]], "image")
for ax, m in zip(axes[1:], models):
    show_image(ax, amplify(deltas[m], scale), f"{short(m)}\nΔ = {probes[m].change[0, pos, 0]:+.2f}")
fig.suptitle(f"{roi} probes at L2 eps = {eps:g} (224 px units), amplified ×{scale:.0f}; Δ: own predicted change")
savefig(fig, "07_probe_examples")
plt.show()

# %% [markdown]
# ## 2. Fixed effect: the budget each model needs
#
# Now the size is free and the effect is fixed: for each source model, probed image and ROI,
# bisection over eps (`probelib.probes.fixed_effect`, PGD at each trial) finds the smallest L2
# budget whose probe changes the model's own prediction by `target_change` s.d. of the observed
# responses. The largest budget tried is set from the fixed-budget sensitivities (first-order
# estimate times 2, `fixed_effect_budget`), which saves most of the bisection; probes that still
# fall short are counted as unreached. Fewer images are used here (`n_images_fe`): the search costs
# several probes per image. {numref}`fig-07-fixed_effect_budgets` shows the budgets found.
#
# **Verdict rules, fixed before the results.**
#
# - *Robust models need larger probes*: per image and ROI, the log ratio of the median budget that
#   robust sources need to that of standard sources (budgets of probes that reached the target).
#   **Reproduced** if it is above 0 by a one-sided Wilcoxon signed-rank test over image x ROI
#   pairs (p < .05); **opposite** if below; otherwise **not reproduced**.
# - *Fixed-effect probes of robust models transfer*: per image, the change that robust sources'
#   probes cause in the other models minus the change that standard sources' probes cause, both in
#   units of the target change and averaged over targets and ROIs. **Reproduced** if it is above 0
#   by a one-sided paired Wilcoxon test over images (p < .05) *and* robust probes reach at least
#   half of the target change on average; **partly reproduced** if only the test passes;
#   **opposite** if significant in the other direction; otherwise **not reproduced**.

# %% tags=["hide-input"]
idx_fe = idx[:n_images_fe]
fe, fe_rows = {}, []
for roi in rois:
    sd = float(response_sd(ds.responses[roi])[0])
    target = target_change * sd
    fe[roi] = {}
    for m in fe_models:
        fixed = panel_pgd(fit, m, roi, image_index=idx, **probe_kw)
        eps_max = fixed_effect_budget(fixed.sensitivity[0][:len(idx_fe)], eps_px, target,
                                      cap=0.25 * np.sqrt(3 * image_size ** 2))
        res = panel_fixed_effect(fit, m, roi, image_index=idx_fe, target_change=target,
                           norm="l2", direction="abs", eps_max=eps_max, tol=fe_tol, steps=fe_steps,
                           store_perturbations=True)
        fe[roi][m] = res
        for i in range(len(idx_fe)):
            fe_rows.append({"roi": roi, "model": m, "group": group_of[m], "image": int(idx_fe[i]),
                            "eps_224": res.eps[i, 0] / (image_size / 224), "reached": bool(res.reached[i, 0])})
need = pd.DataFrame(fe_rows)
summary = need.groupby(["roi", "model"], sort=False).agg(
    median_eps_224=("eps_224", "median"), reached=("reached", "mean"))
summary

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-07-fixed_effect_budgets", "caption": "L2 budget (the paper's units) that each source model needs to change its own prediction by `target_change` s.d. of the observed responses, per ROI, on this run's data (the embedded demo in this book). Dots: probed images whose search reached the target (colour: standard, robust, untrained); bars: medians; dotted line: the fixed budget of part 1; log scale."}}
fig, ax = plt.subplots(figsize=(1.0 * len(fe_models) * len(rois) + 2, 3.6))
labels = []
for k, (key, d) in enumerate(need.groupby(["roi", "model"], sort=False)):
    ok = d[d.reached]
    c = {"standard": "tab:red", "robust": "tab:blue", "untrained": "0.55"}[group_of[key[1]]]
    ax.scatter(np.full(len(ok), k) + np.linspace(-0.15, 0.15, len(ok)), ok.eps_224, color=c, s=16)
    if len(ok):
        ax.plot([k - 0.3, k + 0.3], [ok.eps_224.median()] * 2, color="k", lw=2)
    labels.append(f"{key[0]}: {short(key[1])}")
ax.axhline(eps, color="k", ls=":", lw=1, label=f"fixed budget eps = {eps:g}")
ax.set_yscale("log")
ax.set_xticks(range(len(labels)), labels, rotation=35, ha="right", fontsize=8)
ax.set_ylabel("L2 budget needed (224 px units)")
ax.set_title(f"Budget for a {target_change:g} s.d. change of the model's own prediction (bars: medians)")
ax.legend(fontsize=8)
savefig(fig, "07_fixed_effect_budgets")
plt.show()

# %%
med = need[need.reached].groupby("group")["eps_224"].median()
print("median budget needed (224 px units) by group:", med.round(3).to_dict())
print(f"reached the target: {need.reached.mean():.0%} of {len(need)} image-model-ROI probes")
if {"standard", "robust"} <= set(med.index):
    print(f"Robust (adversarially fine-tuned) models need {med['robust'] / med['standard']:.1f} times the L2 budget "
          f"of standard models to change their own prediction by {target_change:g} s.d.")
    ok = need[need.reached]
    by = ok.groupby(["roi", "image", "group"]).eps_224.median().unstack("group")
    by = by.dropna(subset=["standard", "robust"])
    v_budget = findings.one_sample(np.log(by["robust"] / by["standard"]), expect="greater", threshold=0.0,
                                   what="log(budget robust / budget standard)")
    chapter_verdicts["robust models need larger probes for a fixed effect"] = v_budget
    print(f"P2-fe-budget: {v_budget.sentence} (ratio of medians {np.exp(np.median(np.log(by['robust'] / by['standard']))):.2f})")
    if dataset == "demo":
        findings.record("07", "P2-fe-budget", v_budget, stand_in=stand_in,
                        demo=f"log ratio of the L2 budget for a {target_change:g} s.d. change, robust / standard sources")

# %% [markdown]
# ### Transfer of the fixed-effect probes
#
# Each source's fixed-effect probes are applied to every model of the panel. The matrix of
# {numref}`fig-07-transfer_fixed_effect` shows the
# change of the target's prediction in units of the target change (1 = the probe has the same effect
# on the target as on its source); the bottom rows are random noise with the norm of each source's
# probes, averaged over targets.

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-07-transfer_fixed_effect", "caption": "Transfer at a fixed effect, on this run's data (the embedded demo in this book): entry (source, target) is the mean over probed test images of the change of the target's prediction under the source's fixed-effect probe, as a fraction of the target change (log colour scale, values printed). Bottom rows: random noise with the norm of each source's probes."}}
ft = {roi: panel_transfer(fit, roi, fe[roi], idx_fe, targets=models, seed=seed) for roi in rois}
fig, axes = plt.subplots(1, len(rois), figsize=(0.75 * len(models) * len(rois) + 2.5, 0.75 * len(fe_models) + 2.8),
                         squeeze=False)
for ax, roi in zip(axes[0], rois):
    res = ft[roi]
    target = target_change * float(response_sd(ds.responses[roi])[0])
    mat = np.vstack([res.matrix, res.control_matrix]) / target
    im = ax.imshow(np.log10(mat), cmap="magma", vmax=0.1)
    for (i, j), v in np.ndenumerate(mat):
        ax.text(j, i, f"{v:.2g}", ha="center", va="center", fontsize=7, color="w" if v < 0.3 else "k")
    ax.axhline(len(res.sources) - 0.5, color="w", lw=2)
    ax.set_xticks(range(len(res.names)), [short(m) for m in res.names], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(2 * len(res.sources)),
                  [short(m) for m in res.sources] + [f"noise, norm of {short(m)}" for m in res.sources], fontsize=8)
    ax.set_xlabel("target model")
    ax.set_ylabel("source of the probe")
    ax.set_title(f"{roi}: |Δr| / target change (log colour scale)")
    fig.colorbar(im, ax=ax, shrink=0.7, label="log10 fraction of the target change")
fig.suptitle(f"Transfer at a fixed effect ({target_change:g} s.d.), mean over {len(idx_fe)} images")
fig.tight_layout()
savefig(fig, "07_transfer_fixed_effect")
plt.show()

# %% tags=["hide-input"]
for roi in rois:
    res = ft[roi]
    target = target_change * float(response_sd(ds.responses[roi])[0])
    rows = []
    for s, src in enumerate(res.sources):
        others = [t for t, tgt in enumerate(res.names) if tgt != src]
        rows.append({"source": src, "group": group_of[src],
                     "probe norm (224 px)": res.probe_norm[s].mean() / (image_size / 224),
                     "on other models": res.matrix[s, others].mean() / target,
                     "noise of that norm": res.control_matrix[s, others].mean() / target})
    t = pd.DataFrame(rows)
    print(f"{roi}: effect of fixed-effect probes, in units of the target change")
    print(t.round(3).to_string(index=False))
    g = t.groupby("group")["on other models"].mean()
    if {"standard", "robust"} <= set(g.index):
        noise = t.groupby("group")["noise of that norm"].mean()
        print(f"{roi}: probes of robust sources reach {g['robust']:.0%} of the target change in the other models "
              f"(noise of their norm {noise['robust']:.0%}), probes of standard sources {g['standard']:.0%}.\n")
group_img = {}
for grp in ("standard", "robust"):
    vals = []
    for roi in rois:
        res = ft[roi]
        target = target_change * float(response_sd(ds.responses[roi])[0])
        vals += [res.per_image[:, s_i, [t_i for t_i, tgt in enumerate(res.names) if tgt != src]].mean(1) / target
                 for s_i, src in enumerate(res.sources) if group_of[src] == grp]
    if vals:
        group_img[grp] = np.mean(vals, axis=0)
if {"standard", "robust"} <= set(group_img):
    v_fe = findings.paired(group_img["robust"], group_img["standard"], expect="greater",
                           what="robust - standard sources' transfer (fraction of the target change)")
    reach = float(np.mean(group_img["robust"]))
    if v_fe.verdict == "reproduced" and reach < 0.5:
        v_fe.verdict = "partly reproduced"
    v_fe.rule += ("; a reproduced test counts as reproduced only if robust probes reach at least half of the "
                  "target change on average, else partly reproduced")
    v_fe.detail = f"robust probes reach {reach:.0%} of the target change, standard {np.mean(group_img['standard']):.0%}"
    print(f"P2-fe-transfer: {v_fe.sentence}")
    chapter_verdicts["fixed-effect probes of robust models transfer"] = v_fe
    if dataset == "demo":
        findings.record("07", "P2-fe-transfer", v_fe, stand_in=stand_in,
                        demo="fixed-effect probes: change in other models (fraction of the target change), robust minus standard sources")
display(Markdown("**Verdicts of this run** (rules stated before the results; values with 95% CIs over images):\n\n"
                 + "\n".join(f"- {claim}: **{v.verdict}** ({v.sentence.split(': ', 1)[1]})"
                              for claim, v in chapter_verdicts.items())))

# %% [markdown]
# ## How this compares with the paper
#
# - **Fixed budget.** The paper reports that probes of standard models move other models little
#   more than random noise of the same size does, while each model is very sensitive to its own
#   probes. The matrices and summary lines above give the demo's version: the diagonal against the
#   off-diagonal entries and against the noise row.
# - **Fixed effect.** The paper reports that robust models need a much larger perturbation to reach
#   the same effect, and that their fixed-effect probes transfer to all models (standard and
#   robust), unlike the standard models' probes. The verdicts stated above say how far the demo
#   reproduces this. Note what differs: the demo's "robust" models are the *same two networks* as
#   the standard ones, adversarially fine-tuned on the demo's training photographs, so transfer
#   from a fine-tuned model to its own standard network is partly shared architecture and weights
#   (compare it with transfer to the other network); and larger probes transfer more for a trivial
#   reason too, which is why the noise rows use the same norms. The fine-tuning is small (a few
#   hundred steps on about a hundred photographs, up to one layer of each network), where the
#   paper's robust ResNet-50s were adversarially trained on ImageNet.
# - **Which models transfer to which.** In the paper's panel every network is trained; here, compare
#   the entries between the two real-weight networks with those towards the untrained controls,
#   whose features share nothing learned with the others.
# - **Substitutions.** Small-scale adversarial fine-tuning instead of ImageNet adversarial training, two real-weight CNNs plus untrained
#   controls instead of 14 networks, the simulated observer instead of NSD, `image_size` px images with the
#   budget scaled to keep the per-pixel change.
