"""The real Natural Scenes Dataset (NSD): file layout, download, and ROI response extraction.

Three steps, each usable on its own:

1. :func:`nsd_files` lists the relative path of every file the pipeline reads (layout of the
   public bucket ``s3://natural-scenes-dataset``, also served at :data:`NSD_BASE_URL`).
2. :func:`fetch_nsd` downloads exactly those files (resumable, skips complete files).
3. :func:`load_nsd` extracts the responses of category-selective ROIs to the shared images that
   every subject saw three times and returns a :class:`~probelib.data.dataset.Dataset`.

What :func:`load_nsd` computes, per subject:

* Images: the shared images (``sharedix`` of ``nsd_expdesign.mat``) shown exactly 3 times within
  the sessions the subject completed (first ``750 * n_sessions`` entries of ``masterordering``,
  mapped to 73k ids through ``subjectim``). The image set is the intersection over the requested
  subjects and any extra ``shared_subjects``. With all 8 subjects and their real session counts
  this is the papers' 515 images (the default ``shared_subjects``, all eight, gives them for any
  subset of subjects); it is derived, never hard-coded.
* Voxels: ROI labels are looked up by name in the FreeSurfer colour table
  (``floc-<category>.mgz.ctab``) and selected in ``roi/floc-<category>.nii.gz``; of those, the
  voxels with localiser ``t > t_threshold`` in ``floc_<category>tval.nii.gz`` are kept.
* Responses: for each session, only those voxels are read (NIfTI: streamed in blocks of volumes
  through nibabel's array proxy; HDF5: a hyperslab of the ``(750, Z, Y, X)`` dataset), the int16
  betas are divided by 300 (percent signal change), z-scored per voxel over the session's 750
  trials (``ddof=0``), and the trials of the selected images are kept. Single trials are returned
  in ``Dataset.repeats`` (N, 3, V) in order of presentation; ``Dataset.responses`` is their mean.

``average_subjects=False``: ``responses[roi]`` is (N, V) with the voxels of all subjects
concatenated (``voxels[roi]["subject"]`` says whose each column is) and ``noise_ceiling[roi]`` is
NSD's ``ncsnr`` turned into a ceiling on Pearson r, ``sqrt(ncsnr² / (ncsnr² + 1/3))``.

``average_subjects=True`` (paper 1): ``responses[roi]`` is (N, 1), the ROI-mean response (mean
over the ROI's voxels of one subject) averaged over subjects; ``repeats[roi]`` is (N, 3, 1) the
same for each single trial; ``voxels[roi]`` then lists every contributing voxel (not columns), and
``noise_ceiling[roi]`` (1,) applies NSD's ncsnr formula to that ROI-mean signal, estimated from the
repeats: ``noise var = mean over images of var over repeats (ddof=1)``, ``signal var = total
single-trial var - noise var``.

Integrity: every ``.nii.gz`` is read through to the end of its last gzip member, where Python's
gzip module checks each member's CRC-32 and length (a reader that stops after the last voxel never
gets there, so a flipped byte would give wrong responses silently); this costs no extra pass, since
the betas reader decompresses the whole session anyway. ``nsd_expdesign.mat``'s compressed
variables are checked (Adler-32) by scipy, and HDF5 chunks by their filters (deflate, fletcher32)
where the file has them. Uncompressed ``.nii``/HDF5 data and the text files carry no checksum.
A file that fails raises ``ValueError`` naming it.

Results are cached (``cache_dir``) as one ``.npz`` file per combination of inputs. The cache key
covers every argument of :func:`load_nsd` and the size and modification time of every NSD file
the extraction may read, so replacing a data file makes a new entry (old entries stay on disk).

The package by concern: :mod:`.paths` (layout, file access, gzip integrity), :mod:`.fetch`
(downloads), :mod:`.design` (experimental design, shared images), :mod:`.rois` (colour tables,
ROI voxels), :mod:`.betas` (reading the ROI voxels of each session), :mod:`.assembly`
(:func:`load_nsd` and its cache).
"""
from __future__ import annotations

from .assembly import load_nsd
from .betas import _read_hdf5_voxels, _read_nifti_voxels, _zscore  # noqa: F401 - used by the benchmarks
from .design import NSDDesign, nsd_shared_images, read_expdesign, shared_repeat_images
from .fetch import fetch_nsd
from .paths import (ALL_SUBJECTS, BETA_SCALE, FLOC_LABELS, FLOC_TVAL_NAMES, MAX_SESSIONS, N_IMAGES,  # noqa: F401
                    N_REPEATS, NSD_BASE_URL, NSD_BUCKET, NSD_FILES, NSD_SESSIONS, TRIALS_PER_SESSION, nsd_files,
                    nsd_path)
from .rois import NSD_ROIS, read_ctab

__all__ = [
    "NSD_BASE_URL",
    "NSD_BUCKET",
    "NSD_SESSIONS",
    "NSD_FILES",
    "NSD_ROIS",
    "FLOC_LABELS",
    "FLOC_TVAL_NAMES",
    "NSDDesign",
    "nsd_path",
    "nsd_files",
    "read_ctab",
    "read_expdesign",
    "shared_repeat_images",
    "nsd_shared_images",
    "fetch_nsd",
    "load_nsd",
]
