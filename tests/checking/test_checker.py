"""The formula checker (symcnn check): claims as the documents write them, against the derivations.

Correct claims pass; wrong ones fail with the smallest counter-example and the entries that
differ; LaTeX and SymPy syntax mean the same; unreadable input is a one-line error, exit 2.
"""

from __future__ import annotations

import json

import pytest

from symcnn.checking.checker import check
from symcnn.checking.claims import ClaimSyntaxError
from symcnn.checking.parse import parse_claim
from symcnn.checking.result import CheckOptions

CONV_DW = r"\frac{\partial L}{\partial w_{00}} = a x_{00} + b x_{01} + c x_{10} + d x_{11}"
FORWARD_000 = (r"Y_{b, c_{out}, i, j} = \sum_{c_{in}=0}^{C_{in}-1} \sum_{m=0}^{K_h-1} \sum_{n=0}^{K_w-1} "
               r"W_{c_{out}, c_{in}, m, n} \cdot X_{b, c_{in}, s \cdot i + m - p, s \cdot j + n - p} + b_{c_{out}}")
# Document 000's input gradient: the divisibility condition, no range condition.
INPUT_GRADIENT_000 = (
    r"\frac{\partial L}{\partial X_{b, c_{in}, k, l}} = \sum_{c_{out}=0}^{C_{out}-1} \sum_{m=0}^{K_h-1} "
    r"\sum_{n=0}^{K_w-1} \mathbf{1}(s \mid k + p - m) \mathbf{1}(s \mid l + p - n) "
    r"\frac{\partial L}{\partial Y_{b, c_{out}, i, j}} W_{c_{out}, c_{in}, m, n} \text{ where } "
    r"i = \lfloor \frac{k + p - m}{s} \rfloor, j = \lfloor \frac{l + p - n}{s} \rfloor")
RANGE_CONDITION = r"0 \le k + p - m \le s (H_{out} - 1), 0 \le l + p - n \le s (W_{out} - 1)"


# --- element-wise claims -------------------------------------------------------------------------------


def test_a_documented_entry_is_correct():
    result = check(CONV_DW, "conv_3x3_2x2")
    assert result.correct and result.kind == "elements" and result.checked == 1


def test_a_wrong_entry_names_the_entry_and_both_values():
    result = check(r"\frac{\partial L}{\partial w_{00}} = a x_{00} + b x_{10} + c x_{01} + d x_{11}", "conv_3x3_2x2")
    assert not result.correct
    (difference,) = result.differences
    assert difference.entry == "dL/dw00"
    assert difference.claimed == "a*x00 + b*x10 + c*x01 + d*x11"
    assert difference.derived == "a*x00 + b*x01 + c*x10 + d*x11"


def test_several_equations_in_an_aligned_block_are_each_checked():
    block = (r"\begin{aligned} y_{00} &= x_{00} \cdot w_{00} + x_{01} \cdot w_{01} + x_{10} \cdot w_{10} + x_{11} "
             r"\cdot w_{11} \\ y_{01} &= x_{01} \cdot w_{00} + x_{02} \cdot w_{01} + x_{11} \cdot w_{10} + x_{12} "
             r"\cdot w_{11} \end{aligned}")
    assert check(block, "conv_3x3_2x2").checked == 2
    wrong = block.replace("x_{12}", "x_{21}")
    result = check(wrong, "conv_3x3_2x2")
    assert [d.entry for d in result.differences] == ["y01"]


def test_matrices_compare_entry_by_entry_and_decimals_exactly():
    routing = r"\frac{\partial L}{\partial X} = \begin{bmatrix} 0 & b & 0 \\ a + c & 0 & 0 \\ 0 & d & 0 \end{bmatrix}"
    assert check(routing, "maxpool_3x3_k2s1").correct
    swapped = routing.replace("a + c & 0", "a & c")
    assert [d.entry for d in check(swapped, "maxpool_3x3_k2s1").differences] == ["dL/dX[1, 0]", "dL/dX[1, 1]"]
    assert check(r"Y = \begin{bmatrix} 4.25 & 3 \\ 5 & 2 \end{bmatrix}", "avgpool_3x3_k2s1").correct
    assert not check(r"Y = \begin{bmatrix} 4.26 & 3 \\ 5 & 2 \end{bmatrix}", "avgpool_3x3_k2s1").correct


def test_element_claims_against_an_op_use_its_configuration():
    claim = r"Y = \begin{bmatrix} 9 & 5 \\ 9 & 3 \end{bmatrix}"
    values = [1, 5, 4, 9, 2, 1, 6, 3, 2]
    assert check(claim, "maxpool2d", CheckOptions(input_size=3, kernel=2, stride=1, values=values)).correct
    # A pool's stride defaults to its window: then the output is 1x1, not the document's 2x2.
    result = check(claim, "maxpool2d", CheckOptions(input_size=3, kernel=2, values=values))
    assert not result.correct and "shape 1x1" in result.differences[0].derived


def test_entries_with_commas_between_their_indices_are_the_same_entries():
    """``y_{0,1}`` is ``y_{01}``; on a map of 10 or more rows only commas tell ``y_{10,2}`` from ``y_{1,02}``."""
    with_commas = r"\frac{\partial L}{\partial w_{0,0}} = a x_{0,0} + b x_{0,1} + c x_{1,0} + d x_{1,1}"
    assert check(with_commas, "conv_3x3_2x2").correct
    assert not check(with_commas.replace("x_{1,1}", "x_{1,2}"), "conv_3x3_2x2").correct
    options = CheckOptions(input_size=12, kernel=1)
    assert check(r"y_{10,11} = x_{10,11} w_{0,0}", "conv2d", options).correct
    result = check(r"y_{10,11} = x_{10,1} w_{0,0}", "conv2d", options)
    assert [(d.entry, d.derived) for d in result.differences] == [("y_10_11", "w00*x_10_11")]
    with pytest.raises(ValueError, match=r"no derived entry y1011 .*y_\{10,2\} where an index has two digits"):
        check(r"y_{1011} = x_{1011} w_{00}", "conv2d", options)


# --- index-notation claims ---------------------------------------------------------------------------------


def test_document_000_forward_pass_is_correct_at_every_configuration():
    result = check(FORWARD_000, "conv2d")
    assert result.correct and result.kind == "index" and result.checked >= 30


def test_a_flipped_kernel_is_wrong_with_the_smallest_counterexample():
    result = check(r"Y_{i,j} = \sum_{m}\sum_{n} X_{i-m,j-n} W_{m,n}", "conv2d")
    assert not result.correct
    assert result.configuration == "N=1, C_in=1, C_out=1, input 2x3, kernel 2x2, stride 1, padding 0, dilation 1"
    first = result.differences[0]
    assert first.entry == "Y[0, 0]"
    assert first.claimed == "w00*x00" and first.derived == "w00*x00 + w01*x01 + w10*x10 + w11*x11"


def test_the_same_claim_with_the_kernel_read_as_written_is_correct():
    assert check(r"Y_{i,j} = \sum_{m}\sum_{n} X_{i+m,j+n} W_{m,n}", "conv2d").correct


def test_a_missing_range_condition_fails_at_a_small_stride_2_configuration():
    result = check(INPUT_GRADIENT_000, "conv2d", CheckOptions(stride=2))
    assert not result.correct
    # The last row of a 5-row input is in no window at stride 2: dL/dX there is 0, the claim reads dL/dY[2].
    assert result.configuration == "N=1, C_in=1, C_out=1, input 5x2, kernel 2x2, stride 2, padding 0, dilation 1"
    assert result.differences[0].entry == "dL/dX[0, 0, 4, 0]"
    assert result.differences[0].claimed == "reads dL/dY[0, 0, 2, 0], outside its shape (1, 1, 2, 1)"
    assert result.differences[0].derived == "0"
    # With the range condition the same formula is correct at every stride and padding.
    with_range = INPUT_GRADIENT_000.replace(r"\mathbf{1}(s \mid l + p - n)",
                                            r"\mathbf{1}(s \mid l + p - n)\mathbf{1}(" + RANGE_CONDITION + ")")
    assert check(with_range, "conv2d").correct


def test_a_missing_divisibility_condition_fails_at_stride_2():
    without = INPUT_GRADIENT_000.replace(r"\mathbf{1}(s \mid k + p - m) \mathbf{1}(s \mid l + p - n) ", "")
    result = check(without, "conv2d", CheckOptions(zero_outside=frozenset({"dL/dY"})))
    assert not result.correct and "stride 2" in result.configuration


def test_zero_outside_is_the_documents_padded_gradient():
    assert check(INPUT_GRADIENT_000, "conv2d", CheckOptions(zero_outside=frozenset({"dL/dY"}))).correct


def test_latex_and_sympy_syntax_give_the_same_verdicts():
    latex = (r"\frac{\partial L}{\partial W_{u,v}} = \sum_{i=0}^{H_{out}-1}\sum_{j=0}^{W_{out}-1} "
             r"\frac{\partial L}{\partial Y_{i,j}} X_{s i + u, s j + v}")
    sympy_syntax = "dL/dW[u, v] = Sum(dL/dY[i, j]*X[s*i + u, s*j + v], (i, 0, H_out - 1), (j, 0, W_out - 1))"
    first, second = check(latex, "conv2d"), check(sympy_syntax, "conv2d")
    assert first.correct and second.correct and first.checked == second.checked
    no_stride = "dL/dW[u, v] = Sum(dL/dY[i, j]*X[i + u, j + v], (i, 0, H_out - 1), (j, 0, W_out - 1))"
    assert check(no_stride, "conv2d").correct  # a claim without a stride claims nothing about stride 2...
    result = check(no_stride, "conv2d", CheckOptions(stride=2))  # ...unless asked
    assert not result.correct and "stride 2" in result.configuration


def test_element_names_in_sympy_syntax():
    assert check("dL/dw00 = a*x00 + b*x01 + c*x10 + d*x11", "conv_3x3_2x2").correct


def test_output_size_rules_over_many_configurations():
    result = check(r"H_{out} = \lfloor \frac{H_{in} + 2p - K_h}{s} \rfloor + 1", "conv2d")
    assert result.correct and result.checked > 100
    result = check(r"H_{out} = \frac{H_{in} + 2p - K_h}{s} + 1", "conv2d")
    assert not result.correct and result.differences[0].entry == "H_out"
    assert check(r"N_{\text{out}} = \left\lfloor \frac{N_{\text{in}} - F}{S} \right\rfloor + 1", "maxpool2d").correct


def test_where_clauses_constrain_parameters():
    assert check(r"H_{out} = H_{in} \text{ where } p = \frac{K-1}{2}", "conv2d").correct  # odd K only
    result = check(r"H_{out} = H_{in} \text{ where } p = \lfloor \frac{K-1}{2} \rfloor", "conv2d")
    assert not result.correct and "kernel 2x2" in result.configuration


def test_a_layout_reads_channels_last():
    claim = r"Y[n, i, j, k] = \sum_{u}\sum_{v}\sum_{c} X[n, i s + u, j s + v, c] W[u, v, c, k] + b[k]"
    assert check(claim, "conv2d", CheckOptions(layouts={"*": "NHWC"})).correct
    assert not check(claim, "conv2d").correct  # read in symcnn's NCHW: W[u, v, c, k] is W[c_out, c_in, h, w]
    with pytest.raises(ValueError, match="do not fit its layout"):
        check(claim, "conv2d", CheckOptions(layouts={"X": "HWC"}))


def test_indices_from_one():
    claim = r"p_i = \frac{e^{z_i}}{\sum_{j=1}^{F_{in}} e^{z_j}}"
    assert check(claim, "softmax", CheckOptions(one_based=frozenset({"p", "z"}))).correct
    result = check(claim, "softmax")
    assert not result.correct and "outside its shape" in result.differences[0].claimed


def test_activation_and_loss_claims():
    assert check(r"A_{c,i,j} = \max(0, S_{c,i,j})", "relu").correct
    assert check(r"\delta^{[S]}_{c,i,j} = \delta^{[A]}_{c,i,j} \mathbf{1}(S_{c,i,j} > 0)", "relu").correct
    assert not check(r"\delta^{[S]}_{c,i,j} = \delta^{[A]}_{c,i,j} \mathbf{1}(S_{c,i,j} \ge 0)", "relu").correct
    assert check(r"\delta^{[z]}_i = \frac{\partial L}{\partial z_i} = p_i - y_i", "softmax_cross_entropy").correct
    assert not check(r"\frac{\partial L}{\partial z_i} = y_i - p_i", "softmax_cross_entropy").correct


def test_dense_gradients_and_chains():
    assert check(r"\delta^{[W]}_{i,k} = \frac{\partial L}{\partial W_{i,k}} = \delta^{[z]}_i h_k", "dense").correct
    assert check(r"\frac{\partial L}{\partial h_k} = \sum_{i} W_{i,k} \delta^{[z]}_i", "dense").correct
    assert not check(r"\frac{\partial L}{\partial h_k} = \sum_{i} W_{k,i} \delta^{[z]}_i", "dense").correct


def test_max_pool_routing_in_scatter_form():
    claim = (r"\delta^{[A]}_{c,2p+u,2q+v} = \delta^{[P]}_{c,p,q} \mathbf{1}(A_{c,2p+u,2q+v} = P_{c,p,q}) "
             r"\text{ where } u, v \in \{0, 1\}")
    assert check(claim, "maxpool2d", CheckOptions(kernel=2)).correct
    routed_to_corner = claim.replace(r"\mathbf{1}(A_{c,2p+u,2q+v} = P_{c,p,q})", r"\mathbf{1}(u = 0, v = 0)")
    assert not check(routed_to_corner, "maxpool2d", CheckOptions(kernel=2)).correct


def test_notes_say_which_axes_were_fixed():
    result = check(r"Y(i, j) = \sum_{m}\sum_{n} I(i + m, j + n) K(m, n)", "conv2d")
    assert result.correct
    assert any("N fixed at 1" in note for note in result.notes)


def test_names_the_op_does_not_know_are_errors():
    with pytest.raises(ValueError, match="Q is not a tensor of conv2d"):
        check(r"Y_{i,j} = Q_{i,j}", "conv2d")
    with pytest.raises(ValueError, match="q is not an index"):
        check(r"Y_{i,j} = q X_{i,j}", "conv2d")


# --- parsing -----------------------------------------------------------------------------------------------


def test_the_documents_notation_parses():
    claim = parse_claim(r"z_i = \sum_{k=1}^{4096} W_{\mathrm{fc},\,i,k}\,h_k \;+\; b_{\mathrm{fc},\,i}",
                        tensors={"z", "W", "h", "b"})
    assert str(claim.equations[0].rhs) == "b_fc[i] + Sum(W_fc[i, k]*h[k], (k, 1, 4096))"
    claim = parse_claim(r"Y^{(k)}(i,j) = \sum_{u}\sum_{v}\sum_{c} X(i+u, j+v, c) W^{(k)}(u,v,c)",
                        tensors={"X", "W", "Y"})
    assert str(claim.equations[0].lhs) == "Y[k, i, j]"
    assert "W[k, u, v, c]" in str(claim.equations[0].rhs)


@pytest.mark.parametrize("formula, message", [
    (r"Y_{i} = \frac{X_{i}", "unbalanced"),
    (r"Y_{i} = \foo{X_{i}}", r"unsupported LaTeX command \\foo"),
    (r"\sum_{m} X_{m}", "expected an equation"),
    ("Y[i] = X[i].__class__", "SymPy syntax may hold"),
    ("__import__('os').system('true') = 1", "SymPy syntax may hold"),
    ("Y[i] = X[i] +* 2", "cannot parse"),
    ("", "empty"),
])
def test_unparseable_formulas_raise_one_line(formula, message):
    with pytest.raises(ClaimSyntaxError, match=message) as raised:
        check(formula, "conv2d")
    assert "\n" not in str(raised.value)


# --- the command ------------------------------------------------------------------------------------------


def test_cli_exit_status_correct_wrong_unparseable(cli):
    status, out, err = cli("check", CONV_DW, "--against", "conv_3x3_2x2")
    assert status == 0 and out.startswith("correct") and err == ""
    status, out, err = cli("check", r"Y_{i,j} = \sum_{m}\sum_{n} X_{i-m,j-n} W_{m,n}", "--against", "conv2d")
    assert status == 1 and out.startswith("wrong: differs from conv2d at N=1") and "claimed w00*x00" in out
    status, out, err = cli("check", r"Y_{i,j} = \sum_{m X_{i}", "--against", "conv2d")
    assert status == 2 and out == "" and err.count("\n") == 1 and err.startswith("symcnn check: error: FORMULA:")
    assert "Traceback" not in err


def test_cli_bad_options_are_one_line(cli):
    status, _, err = cli("check", CONV_DW, "--against", "conv9")
    assert status == 2 and err.startswith("symcnn check: error: --against:") and err.count("\n") == 1
    status, _, err = cli("check", FORWARD_000, "--against", "conv2d", "--stride", "0")
    assert status == 2 and "--stride" in err and err.count("\n") == 1
    status, _, err = cli("check", CONV_DW, "--against", "conv2d", "--tensor", "S=nothing")
    assert status == 2 and "--tensor" in err


def test_cli_json_and_options(cli):
    status, out, _ = cli("check", INPUT_GRADIENT_000, "--against", "conv2d", "--zero-outside", "dL/dY", "--json")
    result = json.loads(out)
    assert status == 0 and result["status"] == "correct" and result["kind"] == "index"
    assert set(result) == {"claim", "against", "kind", "status", "checked", "configuration", "differences", "notes"}
    status, out, _ = cli("check", INPUT_GRADIENT_000, "--against", "conv2d", "--stride", "2", "--json")
    result = json.loads(out)
    assert status == 1 and result["status"] == "wrong" and "stride 2" in result["configuration"]
    assert {"entry", "claimed", "derived"} == set(result["differences"][0])
    status, out, _ = cli("check", r"Y_{c,i,j} = \max(0, S_{c,i,j})", "--against", "relu", "--tensor", "S=input")
    assert status == 0
    status, out, _ = cli("check", r"Y(i,j,c) = \max(0, X(i,j,c))", "--against", "relu", "--layout", "HWC")
    assert status == 0


def test_cli_reads_the_formula_from_stdin(cli, monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(CONV_DW))
    status, out, _ = cli("check", "-", "--against", "conv_3x3_2x2")
    assert status == 0


def test_document_003_plain_text_gradients_read_as_latex():
    claim = "∂L/∂X[i,j,c] = \\sum_{u}\\sum_{v}\\sum_{k} ∂L/∂Y[u,v,k] · W[i-u·s, j-v·s, c, k]"
    layouts = {"X": "HWC", "dL/dX": "HWC", "dL/dY": "HWC", "W": "HWIO"}
    assert check(claim, "conv2d", CheckOptions(layouts=layouts, zero_outside=frozenset({"W"}))).correct
    result = check(claim, "conv2d", CheckOptions(layouts=layouts))
    assert not result.correct and "reads W" in result.differences[0].claimed


def test_a_tensor_needs_its_spatial_indices():
    with pytest.raises(ValueError, match="dL/dX is read with 0 indices; its axis H"):
        check(r"\frac{\partial L}{\partial X} = \sum_{u} W_{u}", "conv2d")
