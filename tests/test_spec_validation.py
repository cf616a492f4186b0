"""The Python API refuses bad arguments with a one-line ``ValueError`` that names the field
first (``stride: must be an integer >= 1, got 0``), the same messages the CLI turns into
``--option: ...``; and it accepts every valid boundary case.
"""

from __future__ import annotations

import numpy as np
import pytest
from sympy import Array

from symcnn.symbolic import layers
from symcnn.symbolic.derive import MAX_EXPANSION_TERMS, LayerConfig, derive, parse_values, vjp
from symcnn.symbolic.tensors import as_array, symbol_array
from symcnn.validation import check_window, integer, pair


def x_(shape=(1, 1, 3, 3)):
    return symbol_array("x", shape)


def w_(shape=(1, 1, 2, 2)):
    return symbol_array("w", shape)


def raises_one_line(field: str, *fragments: str):
    """Context manager: a ValueError whose single-line message starts with ``field: ``."""

    class _Check:
        def __enter__(self):
            self._raises = pytest.raises(ValueError)
            self.info = self._raises.__enter__()
            return self.info

        def __exit__(self, *exc):
            suppressed = self._raises.__exit__(*exc)
            if not suppressed:  # another exception type: let it propagate unchanged
                return False
            message = str(self.info.value)
            assert "\n" not in message, message
            assert message.startswith(f"{field}: "), message
            for fragment in fragments:
                assert fragment in message, (fragment, message)
            return suppressed

    return _Check()


# --- symcnn.symbolic.layers.conv2d -----------------------------------------------------------------------


def test_conv2d_mismatched_channels():
    with raises_one_line("weight", "has 1 input channels, but the input has 2"):
        layers.conv2d(x_((1, 2, 3, 3)), w_((1, 1, 2, 2)))


def test_conv2d_kernel_larger_than_input():
    with raises_one_line("kernel", "(4x4)", "larger than the input (3x3)"):
        layers.conv2d(x_(), w_((1, 1, 4, 4)))


def test_conv2d_kernel_larger_in_one_axis_only():
    with raises_one_line("kernel", "(2x4)", "(3x3)"):
        layers.conv2d(x_(), w_((1, 1, 2, 4)))


def test_conv2d_dilated_kernel_larger_than_input_names_its_span():
    with raises_one_line("kernel", "at dilation 3x3", "spanning 4x4", "(3x3)"):
        layers.conv2d(x_(), w_(), dilation=3)


def test_conv2d_kernel_larger_than_padded_input():
    with raises_one_line("kernel", "padded input (5x5)"):
        layers.conv2d(x_(), w_((1, 1, 6, 6)), padding=1)


def test_conv2d_padding_makes_a_large_kernel_fit():
    y = layers.conv2d(x_(), w_((1, 1, 5, 5)), padding=1)
    assert tuple(y.shape) == (1, 1, 1, 1)


@pytest.mark.parametrize("stride", [0, -1, 1.5, True, "2", None], ids=repr)
def test_conv2d_bad_stride(stride):
    with raises_one_line("stride", "must be an integer >= 1"):
        layers.conv2d(x_(), w_(), stride=stride)


def test_conv2d_bad_stride_pair():
    with raises_one_line("stride", "pair"):
        layers.conv2d(x_(), w_(), stride=(1, 2, 3))
    with raises_one_line("stride", "got 0"):
        layers.conv2d(x_(), w_(), stride=(1, 0))


def test_conv2d_bad_padding_and_dilation():
    with raises_one_line("padding", "must be an integer >= 0, got -1"):
        layers.conv2d(x_(), w_(), padding=-1)
    with raises_one_line("dilation", "must be an integer >= 1, got 0"):
        layers.conv2d(x_(), w_(), dilation=0)
    with raises_one_line("dilation", "got 0"):
        layers.conv2d(x_(), w_(), dilation=(2, 0))


def test_conv2d_numpy_integers_are_accepted():
    y = layers.conv2d(x_((1, 1, 5, 5)), w_(), stride=np.int64(2), padding=np.int32(1))
    assert tuple(y.shape) == (1, 1, 3, 3)


def test_conv2d_bias_of_wrong_length():
    with raises_one_line("bias", "expected 1 entries", "got 2"):
        layers.conv2d(x_(), w_(), bias=[1, 2])


def test_conv2d_tensor_of_wrong_rank():
    with raises_one_line("input", "rank-4", "(1, 3, 3)"):
        layers.conv2d(symbol_array("x", (1, 3, 3)), w_())
    with raises_one_line("weight", "rank-4"):
        layers.conv2d(x_(), symbol_array("w", (2, 2)))


def test_conv2d_empty_axis():
    with raises_one_line("input", "non-empty"):
        layers.conv2d(Array([], (0, 1, 3, 3)), w_())


def test_conv2d_ragged_nested_list():
    with raises_one_line("input", "rectangular"):
        layers.conv2d([[[[1, 2], [3]]]], w_((1, 1, 1, 1)))


def test_non_numeric_element_is_refused_naming_the_tensor():
    with raises_one_line("input", "rectangular nested list of numbers or symbols"):
        layers.maxpool2d([[[[None, 2], [3, 4]]]], kernel=1)


def test_string_element_is_refused_naming_the_tensor():
    with raises_one_line("input"):
        layers.conv2d([[[["x", 1], [1, 1]]]], w_())


# --- the other layers ---------------------------------------------------------------------------


def test_pool_kernel_larger_than_input():
    with raises_one_line("kernel", "(4x4)", "(3x3)"):
        layers.maxpool2d(x_(), kernel=4)
    with raises_one_line("kernel", "(1x4)"):
        layers.avgpool2d(x_(), kernel=(1, 4))


def test_pool_bad_kernel_and_stride():
    with raises_one_line("kernel", "must be an integer >= 1, got 0"):
        layers.avgpool2d(x_(), kernel=0)
    with raises_one_line("stride", "must be an integer >= 1, got 0"):
        layers.maxpool2d(x_(), kernel=2, stride=0)


def test_dense_mismatched_features_and_bias():
    with raises_one_line("weight", "has 4 input features, but the input has 3"):
        layers.dense(symbol_array("x", (1, 3)), symbol_array("w", (2, 4)))
    with raises_one_line("bias", "expected 2 entries", "got 3"):
        layers.dense(symbol_array("x", (1, 3)), symbol_array("w", (2, 3)), bias=[1, 2, 3])
    with raises_one_line("input", "rank-2"):
        layers.dense(x_(), symbol_array("w", (2, 3)))


def test_activation_of_rank_3_tensor():
    with raises_one_line("input", "rank-2", "rank-4"):
        layers.relu(symbol_array("x", (1, 2, 2)))


def test_cross_entropy_targets_of_wrong_shape():
    with raises_one_line("targets", "(1, 3)", "(1, 2)"):
        layers.softmax_cross_entropy(symbol_array("z", (1, 3)), Array([[1, 0]]))


# --- LayerConfig --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields, field, fragment",
    [
        (dict(op="conv3d"), "op", "must be one of conv2d, maxpool2d, avgpool2d, global_avgpool, flatten, dense, relu"),
        (dict(op="conv2d", stride=0), "stride", "must be an integer >= 1, got 0"),
        (dict(op="maxpool2d", stride=(2, 0)), "stride", "got 0"),
        (dict(op="conv2d", padding=-1), "padding", "must be an integer >= 0, got -1"),
        (dict(op="conv2d", dilation=0), "dilation", "must be an integer >= 1, got 0"),
        (dict(op="conv2d", kernel=0), "kernel", "must be an integer >= 1, got 0"),
        (dict(op="conv2d", kernel=4), "kernel", "larger than the input (3x3)"),
        (dict(op="conv2d", kernel=2, dilation=3), "kernel", "spanning 4x4"),
        (dict(op="avgpool2d", input_size=(2, 5), kernel=3), "kernel", "(2x5)"),
        (dict(op="conv2d", channels_in=0), "channels_in", "got 0"),
        (dict(op="conv2d", channels_out=0), "channels_out", "got 0"),
        (dict(op="conv2d", batch=0), "batch", "got 0"),
        (dict(op="conv2d", batch=True), "batch", "got True"),
        (dict(op="conv2d", input_size=(3, 0)), "input_size", "got 0"),
        (dict(op="conv2d", input_size=2.5), "input_size", "got 2.5"),
        (dict(op="maxpool2d", padding=1), "padding", "maxpool2d takes no padding"),
        (dict(op="avgpool2d", dilation=2), "dilation", "avgpool2d takes no dilation"),
        (dict(op="dense", input_size=(3, 3)), "input_size", "must be an integer >= 1"),
        (dict(op="dense", channels_out=0), "channels_out", "got 0"),
    ],
    ids=lambda value: repr(value) if isinstance(value, dict) else None,
)
def test_layer_config_bad_field(fields, field, fragment):
    with raises_one_line(field, fragment):
        LayerConfig(**fields)


def test_layer_config_padding_makes_the_kernel_fit():
    config = LayerConfig("conv2d", kernel=2, dilation=3, padding=1)
    assert config.output_shape == (1, 1, 2, 2)


def test_layer_config_pool_stride_defaults_to_kernel_and_conv_to_one():
    assert LayerConfig("maxpool2d", input_size=4, kernel=(2, 1)).stride == (2, 1)
    assert LayerConfig("conv2d", input_size=4, kernel=(2, 1)).stride == (1, 1)


def test_too_large_configuration_names_the_limit():
    assert MAX_EXPANSION_TERMS == 20_000
    with raises_one_line("configuration", "too large", "the limit is 20,000", "138,384 terms"):
        LayerConfig("conv2d", input_size=(64, 64), kernel=3, channels_in=4)


def test_expansion_limit_boundary_is_inclusive():
    """dense terms = batch * out * in: exactly 20,000 is accepted, 20,100 refused."""
    assert LayerConfig("dense", input_size=100, channels_out=200).expansion_terms == 20_000
    with raises_one_line("configuration", "20,100 terms", "20,000"):
        LayerConfig("dense", input_size=100, channels_out=201)


def test_maxpool_expansion_counts_pairwise_comparisons():
    # 3x3 map, 2x2 window, stride 1: 4 outputs * (4 elements)^2 comparisons.
    assert LayerConfig("maxpool2d", input_size=3, kernel=2, stride=1).expansion_terms == 4 * 16
    assert LayerConfig("avgpool2d", input_size=3, kernel=2, stride=1).expansion_terms == 4 * 4


# --- values, derive, vjp ------------------------------------------------------------------------


def test_parse_values_wrong_count_and_not_a_number():
    with raises_one_line("values", "expected 4 numbers", "got 2"):
        parse_values(["1", "2"], (1, 1, 2, 2))
    with raises_one_line("values", "'x' is not a number"):
        parse_values(["1", "x", "3", "4"], (1, 1, 2, 2))
    with raises_one_line("values", "'nan' is not a number"):
        parse_values(["1", "nan", "3", "4"], (1, 1, 2, 2))


def test_parse_values_division_by_zero_is_not_a_number():
    with raises_one_line("values", "'1/0'"):
        parse_values(["1", "1/0", "3", "4"], (1, 1, 2, 2))


def test_derive_values_of_wrong_shape():
    with raises_one_line("values", "expected shape (1, 1, 3, 3)", "got (2, 2)"):
        derive(LayerConfig("conv2d"), values=Array([[1, 2], [3, 4]]))


def test_vjp_upstream_of_wrong_shape_and_non_symbol_target():
    with raises_one_line("upstream", "(2,)", "(1,)"):
        vjp(Array([1, 2]), Array([1]), {"x": symbol_array("x", (1, 2))})
    with raises_one_line("x", "with respect to symbols"):
        vjp(Array([1]), Array([1]), {"x": Array([1])})


# --- the validation helpers themselves ----------------------------------------------------------


def test_validation_helpers():
    assert integer(3, "batch", 1) == 3
    assert integer(np.int16(3), "batch", 1) == 3
    assert pair(2, "stride", 1) == (2, 2)
    assert pair([2, 3], "stride", 1) == (2, 3)
    assert pair(0, "padding", 0) == (0, 0)
    with raises_one_line("batch", ">= 1"):
        integer(0, "batch", 1)
    with raises_one_line("batch", "got 1.0"):
        integer(1.0, "batch", 1)
    check_window((3, 3), (3, 3))  # an exact fit is fine
    check_window((1, 1), (3, 3), padding=(1, 1))
    with raises_one_line("kernel", "(3x3) is larger than the padded input (3x2)"):
        check_window((1, 0), (3, 3), padding=(1, 1))


def test_as_array_names_the_tensor():
    with raises_one_line("weights", "rectangular"):
        as_array([[1, 2], [3]], "weights")
    with raises_one_line("weights"):
        as_array([None, 1], "weights")
