"""symcnn errata: the documents' claims, transcribed, each checked when the command runs.

Every status is computed: a mutated claim changes it, a convention entry is wrong without its
convention, and a conditional entry is wrong without its condition. docs/errata.md is what
errata_markdown() writes now.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from symcnn.checking import errata
from symcnn.checking.errata import NOT_CHECKED, STATUSES, TRANSCRIPTIONS, Erratum, Transcription, collect, run
from symcnn.checking.errata.document003 import WAITING
from symcnn.checking.errata.model import merge
from symcnn.checking.examples import DOCUMENTS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def entries():
    return collect()


def _transcription(section: str, claim: str = "") -> Transcription:
    (found,) = [t for t in TRANSCRIPTIONS if t.section == section and claim in t.claim]
    return found


def test_every_claim_is_an_entry_with_its_document_and_a_computed_status(entries):
    assert len(entries) == len(TRANSCRIPTIONS) >= 60
    for entry, transcription in zip(entries, TRANSCRIPTIONS):
        assert isinstance(entry, Erratum)
        assert (entry.document, entry.section, entry.claim) == (
            transcription.document, transcription.section, transcription.claim)
        assert entry.status in STATUSES and entry.detail


def test_the_five_documents_are_covered(entries):
    assert {entry.document for entry in entries} == set(DOCUMENTS.values())
    for document in DOCUMENTS.values():
        assert sum(entry.document == document for entry in entries) >= 5


def test_every_worked_example_is_in_the_errata():
    from symcnn.checking.examples import EXAMPLE_LIST

    transcribed = {t.example for t in TRANSCRIPTIONS if t.example} | {t.against for t in TRANSCRIPTIONS}
    # The 002 examples are checked as the document writes them, entry by entry or as matrices.
    covered_elsewhere = {"maxpool_3x3_k2s1", "avgpool_3x3_k2s1", "global_avgpool_3x3", "softmax_ce_gradient"}
    assert {e.name for e in EXAMPLE_LIST} - covered_elsewhere <= transcribed


def test_the_general_formulas_the_issue_names_are_covered(entries):
    sections = " ".join(entry.section for entry in entries)
    for topic in ("Convolution Operation", "Output Size", "Weight Gradient", "Input Gradient", "Bias Gradient",
                  "MaxPool", "ReLU", "Softmax and Cross-Entropy", "Fully-Connected", "Flatten"):
        assert topic in sections, topic


def test_the_findings(entries):
    by_section = {(entry.document[:3], entry.section): entry for entry in entries}
    same_padding = by_section[("000", "Forward Pass / How to arrive at this")]
    assert same_padding.status == "wrong" and "kernel 2x2" in same_padding.detail
    assert by_section[("003", "Advanced CNN Concepts / Transposed Convolution")].status == "wrong"
    flipped = by_section[("002", "Convolution Operation")]
    assert flipped.status == "convention" and flipped.detail.startswith("true convolution")
    assert by_section[("000", "Backward Pass / Input Gradient")].status == "convention"
    assert by_section[("004", "Forward Pass / 6. Fully Connected Layer")].detail == (
        "indices i and k counted from 1; 4096 read as F_in")
    assert by_section[("004", "Backpropagation / 1. Softmax and Cross-Entropy")].status == "verified"
    assert by_section[("002", "Backprop Through Convolution Layer / weight gradients")].status == "verified"


def test_the_findings_of_document_003s_newer_sections(entries):
    by_section = {(entry.document[:3], entry.section): entry for entry in entries}
    for section in ("Forward Pass", "Backward Pass, dL/dx̂", "Backward Pass, dL/dσ²", "Backward Pass, dL/dμ",
                    "Backward Pass, dL/dx"):
        assert by_section[("003", f"Normalization Techniques / Batch Normalization: {section}")].status == "verified"
    layer_norm = by_section[("003", "Normalization Techniques / Layer Normalization")]
    assert layer_norm.status == "conditional" and layer_norm.condition.startswith("a sample's features are not all")
    assert "x = (1, 1)" in layer_norm.counterexample and "undefined" in layer_norm.counterexample
    adaptive = by_section[("003", "Advanced Pooling Variants / Adaptive Average Pooling")]
    assert adaptive.status == "conditional"
    assert adaptive.counterexample.startswith("at input size 5, output size 3: outputs: claimed 4, derived 3")
    separable = by_section[("003", "Advanced CNN Concepts / Separable Convolution: parameters")]
    assert separable.status == "conditional" and "K=1, C_in=1, C_out=1, with biases" in separable.counterexample
    dropout = by_section[("003", "Regularization in CNNs / Dropout")]
    assert dropout.status == "convention" and dropout.detail.startswith("p is the keep probability")
    for section in ("Xavier/Glorot (uniform)", "Xavier/Glorot (Gaussian)", "He (Gaussian)", "He (uniform)"):
        assert by_section[("003", f"Weight Initialization / {section}")].status == "verified"
    for section in ("CNN Visualization and Interpretability / Grad-CAM weights",
                    "Implementation Considerations / Numerical Stability: softmax",
                    "Implementation Considerations / Gradient Clipping",
                    "Advanced CNN Concepts / Transposed Convolution output size"):
        assert by_section[("003", section)].status == "verified", section
    undoing = by_section[("003", "Advanced CNN Concepts / Transposed Convolution output size, undoing a convolution")]
    assert undoing.status == "conditional" and "output padding" in undoing.condition
    overlapping = by_section[("003", "Pooling Operations / Max Pooling gradient")]
    assert overlapping.status == "conditional" and "stride 1" in overlapping.counterexample
    assert by_section[("001", "6.1 Backpropagating Through the POOL Layer / Average Pooling")].status == "conditional"
    stride_one = by_section[("002", "Backprop Through Pooling Layer / Max Pooling output")]
    assert stride_one.status == "conditional" and "shape 1x1" in stride_one.counterexample


def test_the_optimization_claims(entries):
    by_section = {(entry.document[:3], entry.section): entry for entry in entries}
    for section in ("SGD with Momentum", "Adam: moments", "Adam: update", "Step Decay", "Cosine Annealing"):
        assert by_section[("003", f"Optimization for CNNs / {section}")].status == "verified", section
    update = _transcription("Optimization for CNNs / Adam: update")
    assert "which the document uses without defining" in by_section[("003", update.section)].detail
    # The reading matters: m-hat and v-hat read as m and v (no bias correction), the update is wrong at step 1.
    uncorrected = run(replace(update, formula=update.formula.replace("/(1 - beta1**t)", "").replace(
        "/(1 - beta2**t)", "")))
    assert uncorrected.status == "wrong" and uncorrected.counterexample.startswith("at step 1 of symcnn's Adam")
    sgd = _transcription("Optimization for CNNs / SGD with Momentum")
    stale = run(replace(sgd, formula=sgd.formula.replace("eta*v[i]", "eta*v_prev[i]")))
    assert stale.status == "wrong" and stale.counterexample.startswith("at step 1 of sgd_momentum_update")


def test_the_receptive_field_and_operation_count_claims(entries):
    by_section = {(entry.document[:3], entry.section): entry for entry in entries}
    field = by_section[("003", "Receptive Field Analysis / Receptive Field Size")]
    assert field.status == "conditional" and field.condition.startswith("no layer is dilated")
    assert field.counterexample == "at 1 layer: conv2d K=2 s=1 d=2: RF[1]: claimed 2, derived 3"
    for section in ("Receptive Field Analysis / Jump", "Advanced CNN Concepts / Dilated Convolution: Receptive Field",
                    "Computational Complexity / Backward Pass",
                    "Performance Metrics / Computational Metrics: Model Size"):
        assert by_section[("003", section)].status == "verified", section
    backward = _transcription("Computational Complexity / Backward Pass")
    tripled = run(replace(backward, formula="FLOPs_backward = 3*FLOPs_forward"))
    assert tripled.status == "wrong" and "(counted; ≈ at one significant figure, ± 1)" in tripled.counterexample


def test_the_cost_claims(entries):
    by_section = {(entry.document[:3], entry.section): entry for entry in entries}
    memory = by_section[("003", "Parameter Calculation / Memory for Activations")]
    assert memory.status == "convention" and memory.detail.startswith("sizeof(float) read as the size of the network's")
    forward = by_section[("003", "Computational Complexity / Forward Pass")]
    assert forward.status == "convention" and forward.detail.startswith("a FLOP read as a multiply-add (MAC)")
    flops = _transcription("Computational Complexity / Forward Pass")
    # Both readings are needed: FLOPs as operations are about twice, and the padding's products count.
    (as_macs, with_padding) = flops.conventions
    only_macs = run(replace(flops, conventions=(as_macs,)))
    assert only_macs.status == "wrong" and "kernel 3x3, stride 1, padding 1" in only_macs.counterexample
    only_padding = run(replace(flops, conventions=(with_padding,)))
    assert only_padding.status == "wrong" and only_padding.counterexample.endswith("FLOPs: claimed 3, derived 4")
    # 2·MACs would be the operations, not the multiply-adds: wrong as the document reads a FLOP.
    doubled = run(replace(flops, formula="FLOPs = 2*N*H_out*W_out*C_out*(K_h*K_w*C_in + 1)"))
    assert doubled.status == "wrong" and doubled.counterexample.startswith("at N=1, C_in=1, C_out=1, input 1x1")
    per_image = run(replace(flops, formula=flops.formula.replace("N*", "")))
    assert per_image.status == "wrong" and "N=2" in per_image.counterexample
    sizes = _transcription("Parameter Calculation / Memory for Activations")
    without_batch = run(replace(sizes, formula=sizes.formula.replace("N*", "")))
    assert without_batch.status == "wrong" and "batch 2, in float32" in without_batch.counterexample
    unfolded = _transcription("Efficient Convolution Implementation / im2col Transformation")
    assert by_section[("003", unfolded.section)].status == "verified"
    one_channel = run(replace(unfolded, formula="columns[r] = K_h*K_w"))
    assert one_channel.status == "wrong" and one_channel.counterexample.startswith("at N=1, C_in=2")


def test_the_architecture_claims(entries):
    by_section = {(entry.document[:3], entry.section): entry for entry in entries}
    for network in ("LeNet-5 (1998)", "VGG-16"):
        assert by_section[("003", f"CNN Architectures / {network}: Parameter Count")].status == "verified", network
    lenet = _transcription("CNN Architectures / LeNet-5 (1998): Parameter Count")
    # Read to two significant figures, 60,000 is not the 61,706 of the network the document lists.
    finer = run(replace(lenet, options={**lenet.options, "precision": 1000}))
    assert finer.status == "wrong" and finer.counterexample.startswith("at lenet5 (61,706 parameters: conv1 156,")
    assert finer.counterexample.endswith("parameters: claimed 60000, derived 62000")
    vgg = _transcription("CNN Architectures / VGG-16: Parameter Count")
    assert run(replace(vgg, formula="parameters = 134000000")).status == "wrong"
    growth = by_section[("003", "Modern CNN Innovations / Dense Connections (DenseNet): Growth Rate")]
    assert growth.status == "convention" and growth.detail.startswith("the features in layer l read as those of")


def test_a_mutated_claim_changes_its_status():
    forward = _transcription("Forward Pass / Convolution Operation")
    assert run(forward).status == "verified"
    mutated = replace(forward, formula=forward.formula.replace("m - p", "m + p"))
    entry = run(mutated)
    assert entry.status == "wrong" and "padding 1" in entry.detail
    weights = _transcription("Backprop Through Convolution Layer / weight gradients")
    entry = run(replace(weights, formula=weights.formula.replace(r"d \cdot x_{22}", r"d \cdot x_{21}")))
    assert entry.status == "wrong" and entry.detail.startswith("dL/dw11: claimed")


def test_a_convention_entry_is_wrong_without_its_convention_and_wrong_if_the_claim_is():
    conv1 = _transcription("Forward Pass / 2. Convolutional 1 layer")
    assert run(conv1).status == "convention"
    without = run(replace(conv1, conventions=()))
    assert without.status == "wrong" and "outside its shape" in without.detail
    broken = run(replace(conv1, formula=conv1.formula.replace("i+u-1", "i+u")))
    assert broken.status == "wrong" and broken.detail.startswith("even with input channels c' counted from 1")


def test_every_convention_is_needed(entries):
    for entry, transcription in zip(entries, TRANSCRIPTIONS):
        if entry.status == "convention":
            assert entry.detail.startswith(merge(transcription.conventions).name)
            assert run(replace(transcription, conventions=())).status == "wrong", transcription.section


def test_a_convention_is_notation_never_a_restriction_of_the_setting():
    # How a claim is read (layouts, index maps, a tensor zero outside its shape, what a symbol names), never
    # which configurations it is checked at: a stride, a size or a constraint is a condition.
    notation = {"index_maps", "layouts", "zero_outside", "one_based", "p", "flop", "padded_products", "sizeof_float",
                "layer_features"}
    for transcription in TRANSCRIPTIONS:
        for convention in transcription.conventions:
            assert set(convention.options) <= notation, (transcription.section, convention.name)


def test_every_condition_is_needed_and_the_counterexample_lies_outside_it(entries):
    conditional = [(entry, t) for entry, t in zip(entries, TRANSCRIPTIONS) if entry.status == "conditional"]
    assert len(conditional) >= 8
    for entry, transcription in conditional:
        condition = merge(transcription.conditions, " and ").name
        assert entry.condition == condition and f"holds only if {condition}; " in entry.detail
        assert entry.counterexample and entry.counterexample in entry.detail
        without = run(replace(transcription, conditions=()))
        assert without.status == "wrong", transcription.section
        assert without.counterexample == entry.counterexample  # the same smallest case, in the document's setting


def test_a_mutated_probe_claim_changes_its_status():
    line = _transcription("Normalization Techniques / Batch Normalization: Backward Pass, dL/dμ")
    assert run(line).status == "verified"
    mutated = run(replace(line, formula=line.formula.replace("(-2/m)", "(-1/m)")))
    assert mutated.status == "wrong" and mutated.counterexample.startswith("at N=2, C=1, 1x1 (channel 0: m = 2")
    # Read at the batch's statistics, the term that changed vanishes: the free nodes are what catch it.
    at_batch = run(replace(line, formula=line.formula.replace("(-2/m)", "(-1/m)"), options={"statistics": "batch"}))
    assert at_batch.status == "verified"
    dropout = _transcription("Regularization in CNNs / Dropout")
    entry = run(replace(dropout, formula=dropout.formula.replace("kept_value = x/p", "kept_value = x")))
    assert entry.status == "wrong" and entry.detail.startswith("even with p is the keep probability")


def test_an_example_entry_follows_its_worked_example(monkeypatch):
    from symcnn.checking import examples

    shapes = _transcription("CNN Architecture; Forward Pass")
    assert run(shapes).status == "verified"
    example = examples.EXAMPLES["seed004_shapes"]
    wrong = replace(example, expected={**example.expected, "text flatten": (8192,)})
    monkeypatch.setitem(examples.EXAMPLES, "seed004_shapes", wrong)
    entry = run(shapes)
    assert entry.status == "wrong" and "text flatten" in entry.detail


@pytest.fixture
def computed(monkeypatch, entries):
    """The command's runs reuse the module's entries (computed by collect(), once: it takes seconds)."""
    monkeypatch.setattr(errata, "collect", lambda: entries)


def test_json_schema(cli, computed):
    status, out, err = cli("errata", "--json")
    assert status == 0 and err == ""
    data = json.loads(out)
    assert isinstance(data, list) and len(data) == len(TRANSCRIPTIONS)
    for item in data:
        assert set(item) == {"document", "section", "claim", "status", "detail", "condition", "counterexample"}
        assert item["status"] in STATUSES
        assert item["document"] in DOCUMENTS.values()
        assert all(isinstance(item[key], str) and item[key] for key in ("document", "section", "claim", "detail"))
        assert (item["condition"] is not None) == (item["status"] == "conditional")
        assert (item["counterexample"] is not None) == (item["status"] in ("conditional", "wrong"))
    assert {item["status"] for item in data} == set(STATUSES)


def test_text_output_ends_with_the_counts(cli, computed, entries):
    status, out, _ = cli("errata")
    assert status == 0
    counts = {status: sum(e.status == status for e in entries) for status in STATUSES}
    assert out.rstrip().splitlines()[-1] == (
        f"{len(entries)} claims: {counts['verified']} verified, {counts['convention']} verified under the "
        f"document's convention, {counts['conditional']} conditional, {counts['wrong']} wrong")


def test_docs_errata_md_is_up_to_date(entries):
    written = (ROOT / "docs" / "errata.md").read_text(encoding="utf-8")
    assert written == errata.errata_markdown(entries), "regenerate: symcnn errata --markdown --out docs/errata.md"


def test_every_character_of_the_errata_is_typeset_in_latex(entries):
    from symcnn.report.writer import _tex_escape

    for entry in entries:
        for text in (entry.section, entry.claim, entry.detail):
            assert "?" not in _tex_escape(text) or "?" in text, text


def test_markdown_lists_what_is_not_checked(entries):
    markdown = errata.errata_markdown(entries)
    for _document, section, _ in NOT_CHECKED:
        assert section.replace("|", "\\|") in markdown


def test_what_is_not_checked_is_prose_nothing_to_evaluate_or_nothing_to_check_against():
    # A reason says why: prose, a definition with nothing to check it against, a formula with nothing to
    # evaluate; none says "outside symcnn's ops", and none waits any more (the model summary is built).
    sections = " ".join(section for _, section, _ in NOT_CHECKED)
    for topic in ("Normalization", "Weight Initialization", "Adaptive", "/ Dropout", "Grad-CAM weights",
                  "Transposed", "Separable", "Optimization for CNNs", "Receptive Field",
                  "Computational Complexity", "Model Size", "Memory for Activations", "LeNet-5", "VGG-16",
                  "Efficient Convolution Implementation", "Dense Connections"):
        assert topic not in sections, topic
    assert not any("outside symcnn's ops" in reason or reason.startswith(WAITING) for _, _, reason in NOT_CHECKED)
    (alexnet,) = [reason for _, section, reason in NOT_CHECKED if "AlexNet" in section]
    assert alexnet.startswith("its architecture line gives no count")


def test_out_writes_atomically(cli, computed, tmp_path):
    target = tmp_path / "errata.json"
    status, out, _ = cli("errata", "--json", "--out", target)
    assert status == 0 and out.strip() == f"wrote {target}"
    assert len(json.loads(target.read_text())) == len(TRANSCRIPTIONS)
    assert [path.name for path in tmp_path.iterdir()] == ["errata.json"]  # no temporary file left
