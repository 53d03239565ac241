"""Hypothesis over the option fields: every value gives a valid object or an ``OptionError`` (a
``ValueError``) whose message names the field, never another exception."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codeformer_nodes import FidelityRamp, RestoreOptions
from codeformer_nodes.pipeline.errors import OptionError
from codeformer_nodes.pipeline.video import VideoOptions

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, 2, 3, 4, 5, 16, 512, 640, 0.5, 1.0, 2.0, -1, -0.0]),
    st.text(max_size=4),
    st.sampled_from(["all", "largest", "codeformer", "facexlib", "restoration", "retinaface_mobile0.25", "~/x"]),
)
CONTAINERS = st.one_of(
    st.lists(SCALARS, max_size=5),
    st.tuples(SCALARS, SCALARS, SCALARS, SCALARS),
    st.dictionaries(st.sampled_from(["x", "y", "width", "height"]), SCALARS, max_size=4),
    st.lists(st.lists(st.one_of(st.integers(-5, 600), SCALARS), min_size=4, max_size=4), max_size=3),
)
TENSORS = st.sampled_from(
    [
        torch.ones(8, 8),
        torch.zeros(1, 0, 0),
        torch.full((2, 4, 4), float("nan")),
        torch.ones(1, 1, 4, 4),
        torch.ones(4, 4, dtype=torch.uint8),
        torch.ones(4, 4, dtype=torch.bool),
        np.ones((4, 4)),
    ]
)
VALUES = st.one_of(SCALARS, CONTAINERS, TENSORS, st.builds(object))
RESTORE_FIELDS = [field.name for field in dataclasses.fields(RestoreOptions)]
VIDEO_FIELDS = [field.name for field in dataclasses.fields(VideoOptions)]
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def built_or_named(make, fields: dict[str, object]) -> None:
    """``make(**fields)`` gives an object, or an OptionError naming one of the fields."""
    try:
        make(**fields)
    except OptionError as error:
        assert any(name in str(error) for name in fields), f"{error!s} names none of {list(fields)}"


@FUZZ
@given(field=st.sampled_from(RESTORE_FIELDS), value=VALUES)
def test_any_value_of_one_restore_field(field, value):
    built_or_named(RestoreOptions, {field: value})


@FUZZ
@given(fields=st.dictionaries(st.sampled_from(RESTORE_FIELDS), VALUES, min_size=2, max_size=5))
def test_any_values_of_several_restore_fields(fields):
    built_or_named(RestoreOptions, fields)


@FUZZ
@given(field=st.sampled_from(VIDEO_FIELDS), value=VALUES)
def test_any_value_of_one_video_field(field, value):
    built_or_named(VideoOptions, {field: value})


@FUZZ
@given(fields=st.dictionaries(st.sampled_from(VIDEO_FIELDS), VALUES, min_size=2, max_size=5))
def test_any_values_of_several_video_fields(fields):
    built_or_named(VideoOptions, fields)


@FUZZ
@given(values=st.tuples(VALUES, VALUES, VALUES, VALUES))
def test_any_fidelity_ramp(values):
    built_or_named(FidelityRamp, dict(zip(("small_w", "large_w", "small_size", "large_size"), values, strict=True)))


@pytest.mark.parametrize("value", [10**400, -(10**400)])
def test_numbers_too_large_for_a_float_are_named(value):
    with pytest.raises(OptionError, match="regions"):
        RestoreOptions(regions=[0, 0, value, 10])
