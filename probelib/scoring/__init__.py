"""Score any network the papers' way: one call from a model to a table.

``probelib.score(model, layer=...)`` answers, for one network and each ROI (FFA, PPA, EBA,
VWFA), the questions of the book:

- **predictivity**: held-out Pearson r of a readout fitted on the training images, and r divided
  by the noise ceiling;
- **adversarial sensitivity**: how far a small targeted perturbation moves the prediction, for
  FGSM and PGD probes at each budget, next to the same perturbation with its pixels shuffled and
  to random noise of the same size (the controls), in s.d. of the observed responses, with a 95 %
  confidence interval over images;
- **transfer**: what the model's PGD probes do to a reference (the simulated observer, the
  "brain", on the demo; the reference models on NSD), next to random noise of the same size;
- **local coding axes**: the similarity of the model's top-k perturbation subspace (Jacobian of
  the ROI's most reliable voxels) to those of a reference panel (by default the demo's standard
  and most robust models, and the observer) at the same images.

:func:`score` returns a tidy ``pandas.DataFrame``, one row per (model, ROI); the reference models
get rows too (``role == "reference"``) so that every number has its comparison next to it.
:func:`score_report` returns a :class:`ScoreReport` that also holds the long tables behind the
figures and writes the CSV / Markdown tables, the figures and a one-page HTML report
(:meth:`ScoreReport.save`, what ``probelib score`` writes).

Everything is cached on disk by content (the network's code, settings and weights, the images
and every argument; :mod:`probelib.cache`): a second call with the same arguments reads the
whole report back; another network shares only the reference panel's results.

"""
from __future__ import annotations

from .compute import budget_label, default_budgets, default_reference, score, score_report
from .report import (BATCH, DEFAULT_L2_BUDGETS_64PX, DEFAULT_LINF_BUDGETS, NORMS, OBSERVER, PROBES,
                     SCORE_VERSION, ScoreReport)

__all__ = ["ScoreReport", "score", "score_report", "default_budgets", "budget_label", "default_reference",
           "SCORE_VERSION", "NORMS", "DEFAULT_LINF_BUDGETS", "DEFAULT_L2_BUDGETS_64PX", "OBSERVER", "PROBES",
           "BATCH"]
