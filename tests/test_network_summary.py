"""The model summary (symcnn/network_summary.py, ``symcnn summary``): document 003's parameter counts,
receptive fields against the published ones and hand-worked graphs, the tiling mark on document
003's own AlexNet input, memory, and the command line. The figures against torchinfo, fvcore and
ptflops: tests/interop/test_summary_references.py.
"""

from __future__ import annotations

import json

import pytest

import symcnn
from symcnn.network_summary import summary
from symcnn.spec import ARCHITECTURE_SPECS, SHIPPED_SPECS, SPEC_DIR, load_spec, parse_spec, spec_toml


def _total_parameters(name: str) -> int:
    return summary(name).totals.parameters


def test_lenet5_has_the_parameters_document_003_counts_about():
    # Document 003: "≈ 60,000 parameters". With conv2 reading all 6 maps and a dense output layer
    # (lenet5.toml says where it differs from LeCun et al.'s 60,840), 61,706: "≈ 60,000" holds to 3%.
    assert _total_parameters("lenet5") == 61_706
    assert abs(61_706 - 60_000) / 60_000 < 0.03


def test_vgg16_has_document_003s_138_million_parameters():
    # Document 003: "≈ 138 million parameters".
    assert _total_parameters("vgg16") == 138_357_544
    assert round(138_357_544 / 1e6) == 138


def test_alexnet_has_the_one_tower_count():
    # Document 003 states no count for AlexNet. One tower (no groups), without local response
    # normalization: 62,378,344; the paper's two-GPU network (groups = 2 in conv2, conv4, conv5) has
    # 60,965,224, its "60 million".
    result = summary("alexnet")
    assert result.totals.parameters == 62_378_344
    grouped = {"conv2": 256 * (48 * 25 + 1), "conv4": 384 * (192 * 9 + 1), "conv5": 256 * (192 * 9 + 1)}
    ungrouped = {layer.label: layer.parameters for layer in result.layers if layer.label in grouped}
    assert result.totals.parameters - sum(ungrouped.values()) + sum(grouped.values()) == 60_965_224


def test_the_architectures_are_loaded_by_name_but_ship_no_kernels():
    from symcnn.spec import shipped_kernels_dir

    assert set(ARCHITECTURE_SPECS).isdisjoint(SHIPPED_SPECS)
    for name in ARCHITECTURE_SPECS:
        assert load_spec(name).name == name
        assert not (shipped_kernels_dir() / load_spec(name).module_name).exists()


def test_receptive_fields_are_the_published_ones():
    """AlexNet's conv5 and pool5 see 163 and 195 pixels; VGG-16's conv5_3 and pool5 196 and 212
    (Araujo et al., "Computing receptive fields of convolutional neural networks", Distill 2019)."""
    alexnet = {layer.label: layer for layer in summary("alexnet").layers}
    assert (alexnet["conv1"].receptive_field, alexnet["conv1"].jump) == ((11, 11), (4, 4))
    assert alexnet["conv5"].receptive_field == (163, 163)
    assert (alexnet["maxpool2d12"].receptive_field, alexnet["maxpool2d12"].jump) == ((195, 195), (32, 32))
    vgg = {layer.label: layer for layer in summary("vgg16").layers}
    assert vgg["conv5_3"].receptive_field == (196, 196)
    assert (vgg["maxpool2d30"].receptive_field, vgg["maxpool2d30"].jump) == ((212, 212), (32, 32))


def _spec(layers, input_shape=(1, 8, 8), name="small"):
    return parse_spec(spec_toml({"name": name, "input": list(input_shape), "layers": layers}))


def test_dilation_widens_the_field_as_document_003_says():
    # Document 003, dilated convolution: RF = 1 + (K - 1)·r; then a stride-2 pool and a 3×2 kernel.
    result = summary(_spec([
        {"type": "conv2d", "name": "atrous", "out_channels": 2, "kernel": 3, "dilation": 2},
        {"type": "maxpool2d", "kernel": 2},
        {"type": "conv2d", "name": "wide", "out_channels": 2, "kernel": [3, 2]},
        {"type": "flatten"}, {"type": "dense", "name": "fc", "out_features": 2}], input_shape=(1, 12, 12)))
    fields = [(layer.receptive_field, layer.jump) for layer in result.layers]
    assert fields[0] == ((5, 5), (1, 1))
    assert fields[1] == ((6, 6), (2, 2))
    assert fields[2] == ((10, 8), (2, 2))
    assert fields[4] == ((10 + 2 * 1, 8 + 2 * 2), (2 * 2, 2 * 3))  # the dense layer: the whole 2×3 map


def test_a_graph_takes_the_largest_field_and_jump_at_a_join():
    result = summary(_spec([
        {"type": "conv2d", "name": "a1", "out_channels": 1, "kernel": 3},          # 6×6, field 3, jump 1
        {"type": "conv2d", "name": "a2", "out_channels": 1, "kernel": 3},          # 4×4, field 5, jump 1
        {"type": "conv2d", "name": "b", "out_channels": 1, "kernel": 2, "stride": 2, "inputs": ["input"]},
        {"type": "add", "name": "join", "inputs": ["a2", "b"]},                      # b: 4×4, field 2, jump 2
        {"type": "concat", "name": "both", "inputs": ["a2", "a2"]},
        {"type": "concat", "name": "all", "inputs": ["join", "both"]},
        {"type": "flatten"}, {"type": "dense", "name": "fc", "out_features": 2}]))
    layers = {layer.label: layer for layer in result.layers}
    assert layers["b"].inputs == ("input",) and layers["join"].inputs == ("a2", "b")
    assert (layers["join"].receptive_field, layers["join"].jump, layers["join"].field_exact) == ((5, 5), (2, 2), False)
    assert (layers["both"].receptive_field, layers["both"].jump, layers["both"].field_exact) == ((5, 5), (1, 1), True)
    assert layers["all"].field_exact is False
    text = result.text()
    assert "inputs" in text.splitlines()[1] and "≤5" in text


def test_adaptive_windows_and_transposed_convolutions():
    result = summary(_spec([
        {"type": "adaptive_avgpool2d", "output": [3, 4]},  # 8 → 3 overlaps (a bound); 8 → 4 is exact
        {"type": "conv_transpose2d", "name": "up", "out_channels": 1, "kernel": 2, "stride": 2},
        {"type": "flatten"}, {"type": "dense", "name": "fc", "out_features": 2}]))
    pool, up, _, fc = result.layers
    assert (pool.receptive_field, pool.jump, pool.field_exact) == ((4, 2), (3, 2), False)
    assert up.receptive_field is None and fc.jump is None
    assert "-" in result.text().splitlines()[4].split()


def test_document_003s_alexnet_input_is_marked_where_the_floor_drops_rows():
    text = (SPEC_DIR / "alexnet.toml").read_text().replace("input = [3, 227, 227]", "input = [3, 224, 224]")
    result = summary(parse_spec(text.replace('name = "alexnet"', 'name = "alexnet224"')))
    dropped = {layer.label: layer.dropped for layer in result.layers if not layer.tiles}
    # 224 - 11 = 213 = 4·53 + 1: 54×54, one row and column left over; the pools then floor too.
    assert dropped == {"conv1": (1, 1), "maxpool2d2": (1, 1), "maxpool2d5": (1, 1), "maxpool2d12": (1, 1)}
    assert result.layers[0].output_shape == (96, 54, 54)
    lines = result.text().splitlines()
    assert any(line.startswith("conv1 *") for line in lines)
    assert any(line.startswith("*: the window does not tile") for line in lines)
    assert all(layer.tiles for layer in summary("alexnet").layers)
    assert "*: the window" not in summary("alexnet").text()
    torchvision = text.replace("kernel = 11\nstride = 4", "kernel = 11\nstride = 4\npadding = 2")
    first = summary(parse_spec(torchvision)).layers[0]  # torchvision's padding 2: 55×55, a padded column left
    assert (first.output_shape, first.dropped) == ((96, 55, 55), (1, 1))


def test_memory_is_document_003s_and_scales_with_batch_and_dtype():
    single, double = summary("seed004"), summary("seed004", batch=3, dtype="float64")
    conv1 = single.layers[0]
    assert conv1.activation_bytes == 1 * 32 * 32 * 16 * 4
    assert double.layers[0].activation_bytes == 3 * 32 * 32 * 16 * 8
    assert double.totals.macs == 3 * single.totals.macs
    assert single.totals.macs == 32 * 32 * 16 * (9 * 3 + 1) + 16 * 16 * 32 * (9 * 16 + 1) + 10 * (8192 + 1)
    assert double.totals.parameter_bytes == 2 * single.totals.parameter_bytes == 8 * single.totals.parameters


def test_the_network_and_the_package_give_the_same_summary():
    from symcnn.runtime.network import Network

    net = Network.from_spec("digits", dtype="float64")
    assert net.summary() == symcnn.summary("digits", dtype="float64") == summary(load_spec("digits"),
                                                                                  dtype="float64")


def test_the_json_has_stable_field_names(cli):
    status, out, err = cli("summary", "lenet5", "--json", "--batch", "2")
    assert status == 0 and err == ""
    data = json.loads(out)
    assert set(data) == {"spec", "input_shape", "batch", "dtype", "bytes_per_element", "layers", "totals",
                         "conventions"}
    assert set(data["layers"][0]) == {"label", "type", "inputs", "output_shape", "parameters", "macs",
                                      "activation_bytes", "receptive_field", "jump", "receptive_field_exact",
                                      "tiles", "dropped"}
    assert set(data["totals"]) == {"parameters", "macs", "activation_bytes", "parameter_bytes", "input_bytes"}
    assert data["layers"][0]["macs"] == 2 * 6 * 28 * 28 * (25 + 1)
    assert "one FLOP = one multiply-add" in data["conventions"]["macs"]


def test_the_text_states_its_conventions(cli):
    status, out, _ = cli("summary", "vgg16")
    assert status == 0
    assert out.splitlines()[0] == "vgg16: input 3×224×224, batch 1, float32 (4 bytes per element)"
    assert "one FLOP = one multiply-add" in out and "ReLU (no multiplication)" in out and "4 bytes" in out
    assert "total" in out and "138,357,544" in out


@pytest.mark.parametrize("argv, message", [
    (["nope"], "spec: 'nope' is neither a shipped spec"),
    (["missing.toml"], "spec: no such file: missing.toml"),
    (["lenet5", "--batch", "0"], "--batch: must be an integer >= 1, got 0"),
])
def test_bad_input_is_one_line(cli, argv, message):
    status, out, err = cli("summary", *argv)
    assert status == 2 and out == "" and err.count("\n") == 1 and message in err
