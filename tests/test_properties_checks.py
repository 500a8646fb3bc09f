"""Properties of the input checks shared by every module (``probelib._checks``).

Each check documents what it accepts, what it rejects and what its error names; these tests pin
the accepted / rejected boundary on both sides and the parts of each message a user relies on
(the argument's name, the offending values).
"""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from probelib._checks import (
    as_float32_array,
    check_choice,
    check_eps,
    check_finite_responses,
    check_images,
    check_positive_int,
    check_units,
)


def _raises(fn, *args, match: str, **kwargs):
    with pytest.raises(ValueError) as info:
        fn(*args, **kwargs)
    assert re.search(match, str(info.value)), str(info.value)
    return str(info.value)


# ------------------------------------------------------------------------------------ check_images

def test_check_images_accepts_the_closed_unit_range_and_returns_the_same_tensor():
    for images in (torch.zeros(1, 3, 2, 2), torch.ones(2, 3, 1, 5), torch.full((1, 3, 4, 4), 0.5),
                   torch.tensor([0.0, 1.0]).repeat(1, 3, 2, 1), torch.zeros(1, 3, 2, 2, dtype=torch.float64)):
        assert check_images(images) is images


def test_check_images_rejects_pixels_just_outside_the_unit_range_and_reports_the_range():
    below = torch.full((1, 3, 2, 2), 0.5)
    below[0, 0, 0, 0] = -0.25
    above = torch.full((1, 3, 2, 2), 0.5)
    above[0, 1, 1, 1] = 2.0
    msg = _raises(check_images, below, match=r"^images must have pixels in \[0, 1\]")
    assert msg.endswith("got range [-0.25, 0.5] (did you pass 0-255 values or normalised images?)")
    msg = _raises(check_images, above, match=r"^images must have pixels in \[0, 1\]")
    assert "[0.5, 2]" in msg
    _raises(check_images, torch.full((1, 3, 2, 2), 1.0 + 1e-3), match=r"range \[1\.001, 1\.001\]")
    _raises(check_images, torch.full((1, 3, 2, 2), -1e-3), match=r"range \[-0\.001, -0\.001\]")


def test_check_images_rejects_wrong_types_ranks_channels_and_dtypes_naming_the_argument():
    _raises(check_images, np.zeros((1, 3, 2, 2)), match=r"^images must be a torch\.Tensor .*got ndarray$")
    _raises(check_images, torch.zeros(3, 2, 2), match=r"^images must have rank 4 .*got shape \(3, 2, 2\)$")
    _raises(check_images, torch.zeros(1, 1, 3, 2, 2), match=r"^images must have rank 4")
    _raises(check_images, torch.zeros(0, 3, 2, 2), match=r"^images is an empty batch \(N = 0, shape \(0, 3, 2, 2\)\)")
    _raises(check_images, torch.zeros(1, 1, 2, 2), match=r"^images must have 3 colour channels .*got shape \(1, 1, 2, 2\)$")
    _raises(check_images, torch.zeros(2, 4, 2, 2), match=r"^images must have 3 colour channels")
    _raises(check_images, torch.zeros(1, 3, 2, 2, dtype=torch.uint8),
            match=r"^images must be floating point .*got dtype torch\.uint8$")
    _raises(check_images, torch.zeros(3, 2, 2), name="x0", match=r"^x0 must have rank 4")


def test_check_images_rejects_nan_and_inf_even_among_valid_pixels():
    for bad in (float("nan"), float("inf"), float("-inf")):
        images = torch.full((2, 3, 2, 2), 0.5)
        images[1, 2, 1, 0] = bad
        _raises(check_images, images, name="probe", match=r"^probe contain NaN or infinite pixels$")


# --------------------------------------------------------------------------------------- check_eps

def test_check_eps_returns_a_float64_grid_and_accepts_zero():
    out = check_eps(1)
    assert out.dtype == np.float64 and out.shape == (1,) and out[0] == 1.0
    out = check_eps([0, 2, 3])
    assert out.dtype == np.float64 and out.tolist() == [0.0, 2.0, 3.0]
    assert check_eps(0.0).tolist() == [0.0]
    assert check_eps(np.float32(0.5)).dtype == np.float64


def test_check_eps_rejects_negative_and_non_finite_budgets_listing_them():
    msg = _raises(check_eps, [0.1, -1.0, 0.2, float("inf")], match=r"^eps must be finite and >= 0; got ")
    assert msg.endswith("[-1.0, inf]")
    _raises(check_eps, float("nan"), match=r"got \[nan\]$")
    _raises(check_eps, -1e-12, name="budget", match=r"^budget must be finite and >= 0; got \[-1e-12\]$")


def test_check_eps_rejects_empty_and_multi_dimensional_grids():
    _raises(check_eps, [], match=r"^eps must be a number or a 1-D grid of numbers; got \[\]$")
    _raises(check_eps, [[0.1, 0.2]], name="e", match=r"^e must be a number or a 1-D grid")


# ------------------------------------------------------------------------------ check_positive_int

def test_check_positive_int_boundary_is_inclusive_and_default_minimum_is_one():
    assert check_positive_int(1, "n") == 1
    assert check_positive_int(5, "n", minimum=5) == 5
    assert check_positive_int(0, "n", minimum=0) == 0
    out = check_positive_int(np.int64(3), "n")
    assert out == 3 and type(out) is int
    _raises(check_positive_int, 0, "n_steps", match=r"^n_steps must be an integer >= 1; got 0$")
    _raises(check_positive_int, 4, "k", minimum=5, match=r"^k must be an integer >= 5; got 4$")


def test_check_positive_int_rejects_bools_floats_and_strings():
    _raises(check_positive_int, True, "n", match=r"^n must be an integer >= 1; got True$")
    _raises(check_positive_int, 2.0, "n", match=r"got 2\.0$")
    _raises(check_positive_int, "3", "n", match=r"got '3'$")
    _raises(check_positive_int, np.float64(3.0), "n", match=r"must be an integer")


# ------------------------------------------------------------------------------------ check_choice

def test_check_choice_returns_the_value_and_lists_the_choices_from_any_iterable():
    assert check_choice("b", ["a", "b"], "kind") == "b"
    assert check_choice("a", iter(["a", "b"]), "kind") == "a"
    msg = _raises(check_choice, "c", iter(["a", "b"]), "loss", match=r"^unknown loss 'c'; valid: ")
    assert msg == "unknown loss 'c'; valid: 'a', 'b'"


# ------------------------------------------------------------------------------------- check_units

def test_check_units_none_means_every_output_in_order():
    out = check_units(None, 4)
    assert out.tolist() == [0, 1, 2, 3]


def test_check_units_accepts_the_whole_signed_range_and_wraps_negative_indices():
    out = check_units([3, -4, -1, 0], 4)
    assert out.dtype == np.int64 and out.tolist() == [3, 0, 3, 0]
    assert check_units(2, 5).tolist() == [2]
    assert check_units(np.array([1, 0], dtype=np.uint8), 2).tolist() == [1, 0]
    assert check_units(np.array([-1], dtype=np.int32), 3).dtype == np.int64


def test_check_units_rejects_indices_just_outside_the_range_listing_at_most_ten():
    _raises(check_units, [4], 4, match=r"^units out of range for a model with 4 outputs: \[4\]$")
    _raises(check_units, [0, -5], 4, match=r"outputs: \[-5\]$")
    msg = _raises(check_units, list(range(3, 20)), 3, match=r"out of range")
    assert msg.endswith(f"{list(range(3, 13))}")


def test_check_units_rejects_non_integer_multi_dimensional_and_empty_selections():
    _raises(check_units, [0.0, 1.0], 4, match=r"^units must be integer indices; got \[0\.0, 1\.0\]$")
    _raises(check_units, np.array([True, False]), 4, match=r"^units must be integer indices")
    _raises(check_units, [[0, 1]], 4, match=r"^units must be integer indices")
    _raises(check_units, np.array([], dtype=np.int64), 4,
            match=r"^units is empty: give at least one output unit \(or None for all\)$")


# --------------------------------------------------------------------------- check_finite_responses

def test_check_finite_responses_passes_finite_arrays_and_tensors():
    assert check_finite_responses(np.zeros((3, 2))) is None
    assert check_finite_responses(torch.ones(4, requires_grad=True)) is None


def test_check_finite_responses_counts_bad_entries_and_names_their_columns():
    r = np.zeros((3, 5))
    r[0, 3] = np.nan
    r[2, 3] = np.inf
    r[1, 1] = -np.inf
    _raises(check_finite_responses, r, match=r"^responses contain 3 NaN/inf values in columns \[1, 3\]$")
    t = torch.zeros(2, 4, requires_grad=True) + torch.tensor([0.0, float("nan"), 0.0, 0.0])
    _raises(check_finite_responses, t, name="pred", match=r"^pred contain 2 NaN/inf values in columns \[1\]$")


def test_check_finite_responses_lists_the_last_axis_and_at_most_twenty_columns():
    r = np.zeros((2, 3, 4))
    r[1, 2, 0] = np.nan
    _raises(check_finite_responses, r, match=r"^responses contain 1 NaN/inf values in columns \[0\]$")
    wide = np.full((1, 30), np.nan)
    msg = _raises(check_finite_responses, wide, match=r"contain 30 NaN/inf values")
    assert msg.endswith(f"in columns {list(range(20))}")


def test_check_finite_responses_of_a_vector_names_no_columns():
    r = np.array([0.0, np.nan, 1.0, np.nan])
    _raises(check_finite_responses, r, match=r"^responses contain 2 NaN/inf values$")


# ------------------------------------------------------------------------------- as_float32_array

def test_as_float32_array_is_a_contiguous_float32_copy_of_arrays_and_tensors():
    a = np.arange(6, dtype=np.float64).reshape(2, 3).T
    out = as_float32_array(a)
    assert out.dtype == np.float32 and out.flags.c_contiguous and np.array_equal(out, a)
    t = torch.arange(6.0, requires_grad=True).reshape(3, 2).T
    out = as_float32_array(t)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.flags.c_contiguous
    assert np.array_equal(out, t.detach().numpy())
    assert as_float32_array([1, 2]).dtype == np.float32
