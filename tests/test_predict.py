"""`modelserve predict`'s command-line tensors: typed as the model declares them, and a
clear message for what cannot be a tensor."""

from __future__ import annotations

import pytest

from modelserve_operator.commands import CommandError
from modelserve_operator.predict import parse_inputs


def test_input_takes_the_models_declared_datatype_and_the_arrays_shape():
    [tensor] = parse_inputs(["x=[[50, 1, 2, 3]]"], {"x": "FP32"})
    assert tensor == {"name": "x", "shape": [1, 4], "datatype": "FP32",
                      "data": [50, 1, 2, 3]}


def test_undeclared_input_is_typed_from_its_values():
    ids, mask = parse_inputs(["ids=[[1, 2]]", "mask=[true, false]"], {})
    assert (ids["datatype"], mask["datatype"]) == ("INT64", "BOOL")


@pytest.mark.parametrize(("pair", "message"), [
    ("x", "write NAME=JSON"),
    ("=[1]", "write NAME=JSON"),
    ("x=[1, 2", "not a JSON array"),
    ('x=["a"]', "only numbers"),
])
def test_bad_input_says_what_to_write(pair, message):
    with pytest.raises(CommandError, match=message):
        parse_inputs([pair], {})
