"""The errata's probes: claims a chain of definitions states (batch normalization's backward pass, an
initializer's variance, dropout's scaling, an optimizer's step), checked against what symcnn derives,
computes or measures.

Each probe answers for the document's claim and differently for a claim changed in one place, at the
smallest case where the change shows; the chain evaluator reads only what it is given.
"""

from __future__ import annotations

import re

import pytest
import sympy
from sympy import Array

from symcnn.checking.errata.model import features_differ, no_dilation, output_divides_input, without_bias
from symcnn.checking.errata.probes import PROBES, check
from symcnn.checking.errata.probes.core import Case, Evidence, Probe, evaluate_claim, search
from symcnn.checking.errata.probes.layers import _kept_fraction


def test_a_chain_of_definitions_reads_its_earlier_lines_and_its_givens():
    values = evaluate_claim("mu = Sum(x[k], (k, 0, m - 1))/m\nd[i] = x[i] - mu", {"m": 3, "x": Array([1, 2, 6])},
                            {"d": (3,)})
    assert values["mu"] == 3 and values["d"].tolist() == [-2, -1, 3]


@pytest.mark.parametrize("formula, message", [
    ("y = z[0]", "z is not a tensor of this claim"),
    ("y = x[3]", "reads outside x's shape (3,)"),
    ("t[i] = x[i]", "t is not a tensor this claim may define"),
])
def test_a_chain_that_reads_what_it_is_not_given_is_refused(formula, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        evaluate_claim(formula, {"x": Array([1, 2, 3])})


def test_a_recurrence_over_several_lines_reads_its_earlier_terms():
    values = evaluate_claim("P[0] = 1\nP[l] = P[l - 1]*s[l]\nRF[0] = 1\nRF[l] = RF[l - 1] + (K[l] - 1)*P[l - 1]",
                            {"s": Array([1, 2, 2]), "K": Array([1, 3, 2])}, {"P": (3,), "RF": (3,)})
    assert values["P"].tolist() == [1, 2, 4] and values["RF"].tolist() == [1, 3, 5]
    grid = evaluate_claim("t[0, j] = j\nt[i, j] = t[i - 1, j] + 10", {}, {"t": (2, 2)})["t"]
    assert grid.tolist() == [[0, 1], [10, 11]]


@pytest.mark.parametrize("formula, message", [
    ("J[l] = J[l - 1]", "J[-1] reads outside J's shape (3,)"),
    ("J[2] = 1\nJ[l] = J[l + 1]", "J[1] is read before a line defines it"),
    ("J[0] = 1", "the lines define 1 of J's 3 elements"),
    ("J[0] = 1\nJ[0] = 2", "J[0] is defined twice"),
    ("J[l] = 1\nJ[l] = 2", "J is defined twice"),
    ("J[3] = 1", "J[3] lies outside J's shape (3,)"),
])
def test_a_recurrence_that_reads_what_no_line_defined_is_refused(formula, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        evaluate_claim(formula, {}, {"J": (3,)})


def test_search_stops_at_the_first_case_that_differs_and_counts_the_cases():
    cases = [Case(f"n = {n}", {"n": n}) for n in range(1, 6)]
    squares = Probe("squares", lambda options: cases, lambda case, options: Evidence(
        {"n": case.values["n"]}, {"y": case.values["n"] ** 2}))
    assert search(squares, "y = n**2", {}).correct
    wrong = search(squares, "y = 3*n - 2", {})  # right at n = 1 and 2
    assert (wrong.correct, wrong.checked, wrong.counterexample()) == (False, 3, "at n = 3: y: claimed 7, derived 9")
    assert search(squares, "y = 3*n - 2", {"constraint": lambda values: values["n"] < 3}).correct
    with pytest.raises(ValueError, match="defines none of y"):
        search(squares, "z = n", {})
    with pytest.raises(ValueError, match="no case of the document's setting meets it"):
        search(squares, "y = n**2", {"constraint": lambda values: False})


def test_an_unknown_probe_is_refused():
    with pytest.raises(ValueError, match="probe: must be one of"):
        check("momentum", "v = 0")


_BN_MU = ("dL/dmu = Sum(dL/dxhat[k]*(-1/sqrt(sigma2 + epsilon)), (k, 0, m - 1)) "
          "+ dL/dsigma2*(-2/m)*Sum(x[k] - mu, (k, 0, m - 1))")


def test_batch_normalizations_backward_lines_against_the_derived_gradients():
    assert check("batchnorm", "dL/dxhat[i] = dL/dy[i]*gamma", {"statistics": "free"}).correct
    assert not check("batchnorm", "dL/dxhat[i] = dL/dy[i]", {"statistics": "free"}).correct
    assert check("batchnorm", _BN_MU, {"statistics": "free"}).correct
    assert not check("batchnorm", _BN_MU.replace("(-2/m)", "(-2)"), {"statistics": "free"}).correct
    final = "dL/dx[i] = dL/dxhat[i]/sqrt(sigma2 + epsilon) + dL/dsigma2*2*(x[i] - mu)/m + dL/dmu/m"
    assert check("batchnorm", final, {"statistics": "batch"}).correct
    # The unbiased variance (1/(m - 1)), PyTorch's running statistic, is not what the batch is normalized with.
    unbiased = check("batchnorm", final.replace("2*(x[i] - mu)/m", "2*(x[i] - mu)/(m - 1)"), {"statistics": "batch"})
    assert not unbiased.correct and unbiased.configuration.startswith("N=2, C=1, 1x1")


def test_layer_normalization_needs_a_sample_whose_features_differ():
    formula = ("mu = Sum(x[k], (k, 0, F - 1))/F\nsigma = sqrt(Sum((x[k] - mu)**2, (k, 0, F - 1))/F)\n"
               "LN[i] = gamma[i]*(x[i] - mu)/sigma + beta[i]")
    plain = check("layernorm", formula)
    assert plain.configuration == "F = 2: a sample of equal values, x = (1, 1)"
    assert plain.differences[0].claimed == "undefined (nan)"
    assert check("layernorm", formula, {"constraint": features_differ}).correct
    # With the document's batch variance's unbiased cousin, it is wrong where the features differ too.
    unbiased = formula.replace("/F)\nLN", "/(F - 1))\nLN")
    assert not check("layernorm", unbiased, {"constraint": features_differ}).correct


def test_dropout_reads_p_as_the_keep_probability_and_measures_the_runtimes_masks():
    formula = "kept_value = x/p\nkeep_probability = p"
    assert check("dropout", formula, {"p": "keep"}).correct
    as_drop = check("dropout", formula)
    assert as_drop.configuration.startswith("symcnn's p = 1/4")  # at p = 1/2 both readings agree
    assert abs(_kept_fraction(sympy.Rational(1, 4)) - 0.75) < 0.01


def test_adaptive_pooling_windows_against_symcnns_and_the_condition():
    formula = ("kernel = ceiling(n_in/n_out)\nstride = floor(n_in/n_out)\n"
               "Y[i] = Sum(x[i*stride + u], (u, 0, kernel - 1))/kernel")
    result = check("adaptive_pooling", formula)
    assert result.configuration == "input size 5, output size 3"
    assert result.differences[0].claimed == "x1/2 + x2/2" and result.differences[0].derived == "x1/3 + x2/3 + x3/3"
    assert check("adaptive_pooling", formula, {"constraint": output_divides_input}).correct


def test_separable_counts_come_from_the_registrys_shapes():
    evidence = PROBES["separable"].evidence(Case("", {"K": 3, "C_in": 2, "C_out": 4, "bias": True}), {})
    standard, depthwise, pointwise = 3 * 3 * 2 * 4 + 4, 3 * 3 * 2 + 2, 2 * 4 + 4  # weights and biases
    assert (evidence.derived["standard"], evidence.derived["separable"]) == (standard, depthwise + pointwise)
    formula = "standard = K*K*C_in*C_out\nseparable = K*K*C_in + C_in*C_out"
    assert check("separable", formula, {"constraint": without_bias}).correct
    assert not check("separable", formula.replace("K*K*C_in + ", "K*C_in + "), {"constraint": without_bias}).correct


def test_initializers_variances():
    assert check("initialization", "bound = sqrt(6/(n_in + n_out))", {"rule": "xavier"}).correct
    assert not check("initialization", "bound = sqrt(3/(n_in + n_out))", {"rule": "xavier"}).correct
    assert check("initialization", "variance = 2/n_in", {"rule": "he"}).correct
    # Xavier's variance is not what a ReLU layer needs, nor what symcnn's Network draws.
    he_cases = PROBES["initialization"].cases({"rule": "he"})
    assert [case.values.get("drawn", False) for case in he_cases][:2] == [False, True]
    drawn = {"rule": "he", "constraint": lambda values: values.get("drawn", False)}
    assert check("initialization", "variance = 2/n_in", drawn).correct
    assert not check("initialization", "variance = 1/n_in", drawn).correct


def test_stable_softmax_clipping_and_grad_cam():
    softmax = "M = MaxOver(x[k], (k, 0, F - 1))\np[i] = exp(x[i] - M)/Sum(exp(x[k] - M), (k, 0, F - 1))"
    assert check("stable_softmax", softmax).correct
    assert not check("stable_softmax", softmax.replace("exp(x[k] - M)", "exp(x[k])")).correct
    clipping = ("norm = sqrt(Sum(g[k]**2, (k, 0, P - 1)))\n"
                "clipped[k] = Piecewise((g[k]*threshold/norm, norm > threshold), (g[k], True))\n"
                "clipped_norm = sqrt(Sum(clipped[k]**2, (k, 0, P - 1)))")
    assert check("gradient_clipping", clipping).correct
    assert not check("gradient_clipping", clipping.replace("norm > threshold", "norm < threshold")).correct
    grad_cam = "alpha[k] = Sum(Sum(dyc_dA[k, i, j], (i, 0, H - 1)), (j, 0, W - 1))/Z"
    assert check("grad_cam", grad_cam).correct
    assert not check("grad_cam", grad_cam.replace("/Z", "/H")).correct


_SGD = "v[i] = mu*v_prev[i] + dL/dtheta[i]\ntheta_next[i] = theta[i] - eta*v[i]"
_ADAM_MOMENTS = ("m[i] = beta1*m_prev[i] + (1 - beta1)*dL/dtheta[i]\n"
                 "v[i] = beta2*v_prev[i] + (1 - beta2)*dL/dtheta[i]**2")
_ADAM = (f"{_ADAM_MOMENTS}\nmhat[i] = m[i]/(1 - beta1**t)\nvhat[i] = v[i]/(1 - beta2**t)\n"
         "theta_next[i] = theta[i] - eta*mhat[i]/(sqrt(vhat[i]) + epsilon)")


def _in_float64(values):
    return values["run"] == 2


def test_sgd_with_momentum_step_by_step_exactly_and_as_the_optimizer_runs():
    result = check("sgd_momentum", _SGD)
    assert result.correct and result.checked == 12
    # The velocity scaled by the learning rate moves theta alike (at a constant rate), but v is compared too.
    scaled = check("sgd_momentum", "v[i] = mu*v_prev[i] + eta*dL/dtheta[i]\ntheta_next[i] = theta[i] - v[i]")
    assert scaled.configuration.startswith("step 1 of sgd_momentum_update on 1 parameter")
    assert [difference.entry for difference in scaled.differences] == ["v[0]"]
    # The SGD optimizer's float64 run is checked, within rounding only.
    assert check("sgd_momentum", _SGD, {"constraint": _in_float64}).correct
    damped = check("sgd_momentum", _SGD.replace("+ dL/dtheta[i]", "+ (1 - mu)*dL/dtheta[i]"),
                   {"constraint": _in_float64})
    assert damped.configuration.startswith("step 1 of symcnn's SGD optimizer on 3 parameters, mu = 0.9")
    assert damped.differences[0].derived.endswith("(computed in float64, ± 3.5e-12)")  # 1e-12 of its size


def test_adam_against_the_optimizer_with_the_bias_corrected_moments():
    assert check("adam", _ADAM_MOMENTS).correct
    assert not check("adam", _ADAM_MOMENTS.replace("dL/dtheta[i]**2", "dL/dtheta[i]")).correct
    assert check("adam", _ADAM).correct
    # m-hat and v-hat read as m and v themselves (no bias correction): wrong from the first step.
    uncorrected = check("adam", _ADAM.replace("/(1 - beta1**t)", "").replace("/(1 - beta2**t)", ""))
    assert uncorrected.configuration.startswith("step 1 of symcnn's Adam optimizer on 1 parameter, beta1 = 0.9")
    # epsilon under the root moves theta by about 1e-10 at symcnn's defaults: far beyond rounding, and shown.
    inside = check("adam", _ADAM.replace("(sqrt(vhat[i]) + epsilon)", "sqrt(vhat[i] + epsilon)"))
    assert inside.configuration.startswith("step 1 of symcnn's Adam optimizer on 1 parameter, beta1 = 0.9")
    (difference,) = inside.differences
    assert difference.entry == "theta_next[0]" and difference.claimed != difference.derived.split(" ")[0]


def test_step_decay_and_cosine_annealing_against_the_schedules_and_a_training_runs_rate():
    step = "eta_t = eta_0*gamma**floor(t/step_size)"
    assert check("step_decay", step).correct
    ceiling = check("step_decay", step.replace("floor", "ceiling"))  # equal while step_size is 1
    assert ceiling.configuration == "t = 1, step_size = 2, gamma = 1/2, eta_0 = 1/10: step_decay, exactly"
    in_training = {"constraint": lambda values: "run" in values}
    late = check("step_decay", step.replace("floor(t/step_size)", "floor((t + 1)/step_size)"), in_training)
    assert "TrainConfig.learning_rate" in late.configuration
    cosine = "eta_t = eta_min + (eta_max - eta_min)*(1 + cos(pi*t/T))/2"
    assert check("cosine_annealing", cosine).correct
    assert check("cosine_annealing", cosine, in_training).correct
    without_minimum = cosine.replace("eta_min + ", "")
    assert check("cosine_annealing", without_minimum).configuration.startswith("t = 0, T = 1, eta_max = 0.1, eta_min")
    assert check("cosine_annealing", without_minimum, in_training).correct  # training anneals to 0
    assert not check("cosine_annealing", cosine.replace("pi*t/T", "pi*t/(2*T)"), in_training).correct


_FIELD = "P[0] = 1\nP[l] = P[l - 1]*s[l]\nRF[0] = 1\nRF[l] = RF[l - 1] + (K[l] - 1)*P[l - 1]"


def test_receptive_fields_and_jumps_are_the_rows_an_output_of_the_expanded_formulas_reads():
    case = next(case for case in PROBES["receptive_field"].cases({}) if case.label == (
        "2 layers: conv2d K=3 s=1, maxpool2d K=2 s=2"))
    derived = PROBES["receptive_field"].evidence(case, {}).derived
    assert derived["RF"].tolist() == [1, 3, 4] and derived["J"].tolist() == [1, 1, 2]
    assert check("receptive_field", "J[0] = 1\nJ[l] = J[l - 1]*s[l]").correct
    # Document 003's recurrence has no dilation: a dilated kernel of K taps spans (K - 1) r + 1 rows.
    plain = check("receptive_field", _FIELD)
    assert plain.configuration == "1 layer: conv2d K=2 s=1 d=2" and plain.differences[0].derived == "3"
    assert check("receptive_field", _FIELD, {"constraint": no_dilation}).correct
    assert check("receptive_field", _FIELD.replace("(K[l] - 1)", "(K[l] - 1)*r[l]")).correct
    shifted = check("receptive_field", _FIELD.replace("*P[l - 1]", "*P[l]"), {"constraint": no_dilation})
    assert shifted.configuration == "1 layer: conv2d K=2 s=2"  # the layer's own stride does not widen it
    assert check("dilated_field", "RF = 1 + (K - 1)*r").correct
    assert not check("dilated_field", "RF = K*r").correct


def test_a_convolutions_backward_multiply_adds_are_about_twice_its_forward_ones():
    from symcnn.checking.errata.probes.costs import multiply_adds, operations

    assert (multiply_adds(sympy.sympify("b + w0*x0 + w1*x1")), operations(sympy.sympify("b + w0*x0 + w1*x1"))) == (3, 4)
    assert multiply_adds(sympy.Integer(0)) == 0
    first = next(iter(PROBES["backward_flops"].cases({})))
    evidence = PROBES["backward_flops"].evidence(first, {})
    # 1x1: y = w x + b (2); dL/dw = g x, dL/dx = g w, dL/db = g (3): a ratio of 1.5, which rounds to 2.
    assert (evidence.given["FLOPs_forward"], evidence.derived["FLOPs_backward"]) == (2, 3)
    assert check("backward_flops", "FLOPs_backward = 2*FLOPs_forward").correct
    assert not check("backward_flops", "FLOPs_backward = FLOPs_forward").correct


def test_the_model_size_is_the_bytes_of_the_parameters_a_network_holds():
    size = "Size = Sum(n[l]*bits, (l, 0, L - 1))/8"
    assert check("model_size", size).correct
    in_bits = check("model_size", size.replace("/8", ""))
    assert in_bits.configuration == "seed004 in float32"
    as_float32 = check("model_size", size.replace("bits", "32"))  # the float64 networks hold 8 bytes a parameter
    assert as_float32.configuration == "seed004 in float64"


_FORWARD = "FLOPs = N*H_out*W_out*C_out*(K_h*K_w*C_in + 1)"
_AS_COUNTED = {"flop": "multiply-add", "padded_products": "counted"}


def test_a_convolutions_forward_count_is_its_multiply_adds_with_the_paddings_products():
    # One FLOP a multiplication or an addition: b + w0 x0 + w1 x1 takes 4, the document's formula 3.
    literal = check("forward_flops", _FORWARD)
    assert literal.configuration.startswith("N=1, C_in=1, C_out=1, input 1x2, kernel 1x2")
    assert (literal.differences[0].claimed, literal.differences[0].derived) == ("3", "4")
    # Read as multiply-adds, the products with the padding (dropped from symcnn's expansion) are missing.
    multiply_adds = check("forward_flops", _FORWARD, {"flop": "multiply-add"})
    assert "kernel 3x3, stride 1, padding 1, counted on symcnn's expanded formula" in multiply_adds.configuration
    assert (multiply_adds.differences[0].claimed, multiply_adds.differences[0].derived) == ("10", "2")
    counted = check("forward_flops", _FORWARD, _AS_COUNTED)
    assert counted.correct and counted.checked == 2 * len(PROBES["forward_flops"].cases({}))  # the registry's too
    # The floating-point operations are twice the products: the bias's add takes the place of one.
    assert check("forward_flops", "FLOPs = 2*N*H_out*W_out*C_out*K_h*K_w*C_in", {"padded_products": "counted"}).correct
    without_bias = check("forward_flops", "FLOPs = N*H_out*W_out*C_out*K_h*K_w*C_in", _AS_COUNTED)
    assert without_bias.configuration.startswith("N=1, C_in=1, C_out=1, input 1x1, kernel 1x1")
    no_batch = check("forward_flops", _FORWARD.replace("N*", ""), _AS_COUNTED)
    assert no_batch.configuration.startswith("N=2, C_in=1, C_out=1, input 3x3, kernel 2x2")


def test_the_registrys_count_is_a_case_of_its_own_and_catches_a_changed_registry(monkeypatch):
    from dataclasses import replace

    from symcnn import registry

    labels = [case.label for case in PROBES["forward_flops"].cases(_AS_COUNTED)]
    assert labels[1].endswith("the op registry's macs (symcnn summary's MACs)")
    conv = registry.get("conv2d")
    # A registry that forgot the bias's add: the expansion's case passes, the registry's fails.
    forgetful = replace(conv, macs=lambda shape, settings: conv.macs(shape, {**settings, "bias": False}))
    monkeypatch.setattr(registry, "get", lambda name, get=registry.get: forgetful if name == "conv2d" else get(name))
    changed = check("forward_flops", _FORWARD, _AS_COUNTED)
    assert changed.configuration.endswith("input 1x1, kernel 1x1, stride 1, padding 0, the op registry's macs "
                                          "(symcnn summary's MACs)")


def test_the_unfolded_input_has_a_row_per_output_position_and_a_column_per_tap():
    assert check("im2col", "columns[r] = K_h*K_w*C_in").correct
    per_channel = check("im2col", "columns[r] = K_h*K_w")
    assert per_channel.configuration.startswith("N=1, C_in=2, C_out=1, input 2x2, kernel 1x1")
    # The padding's zeros are entries of the unfolded matrix: every row has all of them.
    padded = next(case for case in PROBES["im2col"].cases({}) if "padding 1" in case.label)
    assert set(PROBES["im2col"].evidence(padded, {}).derived["columns"]) == {9}


def test_activation_memory_is_the_bytes_of_the_outputs_a_network_keeps():
    from symcnn.checking.errata.probes.costs import _kept_bytes

    kept = _kept_bytes("digits", "float32")
    assert kept["conv1", 2] == 2 * 16 * 8 * 8 * 4 and kept["maxpool2d2", 1] == 16 * 4 * 4 * 4
    assert kept["flatten3", 1] == 0  # a view of the pool's output: no memory of its own
    cases = PROBES["activation_memory"].cases({})
    assert {case.values["spec"] for case in cases} == {"digits", "seed004"}
    assert all(len(case.values["shape"]) == 3 for case in cases)  # feature maps only
    memory = "Memory = N*H_out*W_out*C_out*sizeof_float"
    as_c = check("activation_memory", memory)  # C's sizeof(float), 4: half a float64 network's
    assert as_c.configuration == "digits conv1 (conv2d, output 16x8x8), batch 1, in float64"
    digits = {"sizeof_float": "dtype", "constraint": lambda values: values["spec"] == "digits"}
    assert check("activation_memory", memory, digits).correct
    per_image = check("activation_memory", memory.replace("N*", ""), digits)
    assert per_image.configuration == "digits conv1 (conv2d, output 16x8x8), batch 2, in float32"


def test_parameter_counts_come_from_the_summary_with_each_layers_in_the_case():
    lenet = {"network": "lenet5", "precision": 10_000}
    (case,) = PROBES["parameters"].cases(lenet)
    assert case.label.startswith("lenet5 (61,706 parameters: ") and "conv2 2,416, fc1 48,120" in case.label
    assert check("parameters", "parameters = 60000", lenet).correct
    # At two significant figures the document's 60,000 is not LeNet-5's 61,706.
    finer = check("parameters", "parameters = 60000", {**lenet, "precision": 1000})
    assert finer.counterexample().endswith("parameters: claimed 60000, derived 62000")
    vgg = {"network": "vgg16"}
    assert PROBES["parameters"].evidence(*PROBES["parameters"].cases(vgg), vgg).derived == {"parameters": 138357544}
    assert check("parameters", "parameters = 138000000", {**vgg, "precision": 1_000_000}).correct
    assert not check("parameters", "parameters = 134000000", {**vgg, "precision": 1_000_000}).correct
    with pytest.raises(ValueError, match="precision: must be a positive integer"):
        check("parameters", "parameters = 1", {**vgg, "precision": 0.5})


def test_a_dense_blocks_maps_by_symcnns_concat_shapes():
    from symcnn.checking.errata.probes.architectures import dense_block

    spec = dense_block(3, 2, 3)
    assert [layer.inputs for layer in spec.layers if layer.kind == "concat"][-1] == ("input", "h1", "h2", "h3")
    total = "features[l] = k_0 + k*l"
    read = check("dense_growth", total)
    assert read.configuration == "a dense block of 1 layer on k_0 = 1 maps, growth rate k = 1"
    assert (read.differences[0].entry, read.differences[0].derived) == ("features[1]", "1")
    assert check("dense_growth", total, {"layer_features": "after"}).correct
    assert check("dense_growth", "features[0] = k_0\nfeatures[l] = k_0 + k*(l - 1)").correct
    assert not check("dense_growth", "features[l] = k_0 + k*l + 1", {"layer_features": "after"}).correct
