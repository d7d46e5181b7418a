"""Known-wrong and correct answers for chapter 03_feed_forward's checks.

Each mutant is a realistic student mistake; its ``expect`` pins the diagnosis the check
gives (a regular expression searched in the AssertionError's message). The correct
answers are written differently from the reference (clamp, einsum, F.linear, nn.Sequential
inside, F.dropout with training=self.training, ...) and must pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import course_utils.reference.feed_forward
from course_utils.reference.feed_forward import FeedForwardNetwork as ReferenceFFN
from course_utils.reference.feed_forward import feed_forward as reference_feed_forward
from tests.support import Bug, Catalogue, Mutant

# --------------------------------------------------------------------------------------
# feed_forward(x, W1, b1, W2, b2) = max(0, x W1 + b1) W2 + b2, W1: (d_model, d_ff)
# --------------------------------------------------------------------------------------


def ff_stub(x, W1, b1, W2, b2):
    # YOUR CODE HERE
    raise NotImplementedError()


def ff_no_activation(x, W1, b1, W2, b2):
    return (x @ W1 + b1) @ W2 + b2


def ff_gelu(x, W1, b1, W2, b2):
    return F.gelu(x @ W1 + b1) @ W2 + b2


def ff_sigmoid(x, W1, b1, W2, b2):
    return torch.sigmoid(x @ W1 + b1) @ W2 + b2


def ff_relu_after_second_layer(x, W1, b1, W2, b2):
    return torch.relu((x @ W1 + b1) @ W2 + b2)


def ff_relu_on_output_too(x, W1, b1, W2, b2):
    return torch.relu(torch.relu(x @ W1 + b1) @ W2 + b2)


def ff_bias_after_relu(x, W1, b1, W2, b2):
    return (torch.relu(x @ W1) + b1) @ W2 + b2


def ff_no_b2(x, W1, b1, W2, b2):
    return torch.relu(x @ W1 + b1) @ W2


def ff_transposed_weights(x, W1, b1, W2, b2):
    # nn.Linear's convention applied to the paper's matrices.
    return torch.relu(x @ W1.T + b1) @ W2.T + b2


def ff_numpy(x, W1, b1, W2, b2):
    import numpy as np
    hidden = np.maximum(0, x.detach().cpu().numpy() @ W1.detach().cpu().numpy() + b1.detach().cpu().numpy())
    return torch.from_numpy(hidden @ W2.detach().cpu().numpy() + b2.detach().cpu().numpy())


def ff_wrapping_the_reference(x, W1, b1, W2, b2):
    return course_utils.reference.feed_forward.feed_forward(x, W1, b1, W2, b2)


def ff_clamp_matmul(x: Tensor, W1: Tensor, b1: Tensor, W2: Tensor, b2: Tensor) -> Tensor:
    return torch.matmul(torch.clamp(torch.matmul(x, W1) + b1, min=0), W2) + b2


def ff_einsum_linear(x: Tensor, W1: Tensor, b1: Tensor, W2: Tensor, b2: Tensor) -> Tensor:
    hidden = torch.maximum(torch.einsum("...d,df->...f", x, W1) + b1, torch.zeros_like(b1))
    return F.linear(hidden, W2.T, b2)


# --------------------------------------------------------------------------------------
# FeedForwardNetwork(d_model, d_ff, dropout=0.1)
# --------------------------------------------------------------------------------------


class _Base(nn.Module):
    """The right constructor; mutants override ``forward`` (or ``__init__``)."""

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.linear2(self.dropout(torch.relu(self.linear1(x))))


class FFNStub(nn.Module):
    def __init__(self, d_model, d_ff, dropout=0.1):
        super().__init__()
        # YOUR CODE HERE
        raise NotImplementedError()


class FFNForwardStub(_Base):
    def forward(self, x):
        # YOUR CODE HERE
        raise NotImplementedError()


class FFNGelu(_Base):
    def forward(self, x):
        return self.linear2(self.dropout(F.gelu(self.linear1(x))))


class FFNNoActivation(_Base):
    def forward(self, x):
        return self.linear2(self.dropout(self.linear1(x)))


class FFNSigmoid(_Base):
    def forward(self, x):
        return self.linear2(self.dropout(torch.sigmoid(self.linear1(x))))


class FFNReluAfterLinear2(_Base):
    def forward(self, x):
        return torch.relu(self.linear2(self.dropout(self.linear1(x))))


class FFNExtraReluOnOutput(_Base):
    def forward(self, x):
        return torch.relu(self.linear2(self.dropout(torch.relu(self.linear1(x)))))


class FFNDropoutAfterLinear2(_Base):
    def forward(self, x):
        return self.dropout(self.linear2(torch.relu(self.linear1(x))))


class FFNDropoutOnInput(_Base):
    def forward(self, x):
        return self.linear2(torch.relu(self.linear1(self.dropout(x))))


class FFNDropoutTwice(_Base):
    def forward(self, x):
        return self.dropout(self.linear2(self.dropout(torch.relu(self.linear1(x)))))


class FFNDropoutNeverApplied(_Base):
    def forward(self, x):
        return self.linear2(torch.relu(self.linear1(x)))


class FFNNoDropoutModule(nn.Module):
    def __init__(self, d_model, d_ff, dropout=0.1):
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)

    def forward(self, x):
        return self.linear2(torch.relu(self.linear1(x)))


class FFNDropoutAsFloat(nn.Module):
    def __init__(self, d_model, d_ff, dropout=0.1):
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.dropout = dropout

    def forward(self, x):
        return self.linear2(F.dropout(torch.relu(self.linear1(x)), self.dropout, self.training))


class FFNDropoutArgumentIgnored(_Base):
    def __init__(self, d_model, d_ff, dropout=0.1):
        super().__init__(d_model, d_ff, dropout)
        self.dropout = nn.Dropout(0.1)


class FFNFunctionalDropoutAlwaysOn(_Base):
    def forward(self, x):
        return self.linear2(F.dropout(torch.relu(self.linear1(x)), self.dropout.p))


class FFNLinearSizesSwapped(_Base):
    def __init__(self, d_model, d_ff, dropout=0.1):
        super().__init__(d_model, d_ff, dropout)
        self.linear1 = nn.Linear(d_ff, d_model)
        self.linear2 = nn.Linear(d_model, d_ff)


class FFNNoLinear1(nn.Module):
    """The layers named after another codebase (w_1, w_2, as in the Annotated Transformer)."""

    def __init__(self, d_model, d_ff, dropout=0.1):
        super().__init__()
        self.w_1 = nn.Linear(d_model, d_ff)
        self.w_2 = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.w_2(self.dropout(torch.relu(self.w_1(x))))


class FFNHiddenIsDModel(_Base):
    """d_ff ignored: the hidden layer has d_model units."""

    def __init__(self, d_model, d_ff, dropout=0.1):
        super().__init__(d_model, d_model, dropout)


class FFNUnpacksShape(_Base):
    def forward(self, x):
        batch, length, d_model = x.shape
        flat = x.reshape(batch * length, d_model)
        return super().forward(flat).reshape(batch, length, -1)


class FFNOutputDetached(_Base):
    def forward(self, x):
        return super().forward(x).detach()


class FFNWrappingTheReference(nn.Module):
    def __init__(self, d_model, d_ff, dropout=0.1):
        super().__init__()
        self.inner = course_utils.reference.feed_forward.FeedForwardNetwork(d_model, d_ff, dropout)
        self.linear1, self.linear2, self.dropout = self.inner.linear1, self.inner.linear2, self.inner.dropout

    def forward(self, x):
        return self.inner(x)


class FFNSequentialInside(nn.Module):
    """The layers also registered in an nn.Sequential; functional dropout that follows .training."""

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)
        self.net = nn.Sequential(self.linear1, nn.ReLU(), self.dropout, self.linear2)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class FFNDropoutBeforeRelu(nn.Module):
    """Dropout before the ReLU (the same thing: the mask is non-negative) with F.linear."""

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        hidden = F.dropout(F.linear(x, self.linear1.weight, self.linear1.bias), self.dropout.p,
                           training=self.training)
        return F.linear(hidden.clamp_min(0), self.linear2.weight, self.linear2.bias)


CATALOGUE = {
    "check_feed_forward": Catalogue(
        reference=reference_feed_forward,
        mutants=[
            Mutant("stub", ff_stub, r"is not implemented yet"),
            Mutant("no_activation", ff_no_activation, r"Likely mistake: there is no activation"),
            Mutant("gelu", ff_gelu, r"Likely mistake: this is GELU, not ReLU"),
            Mutant("sigmoid", ff_sigmoid, r"Likely mistake: this is a sigmoid"),
            Mutant("relu_after_second_layer", ff_relu_after_second_layer,
                   r"Likely mistake: the ReLU is applied after the second layer"),
            Mutant("relu_on_output_too", ff_relu_on_output_too, r"Likely mistake: there is a ReLU on the output"),
            Mutant("bias_after_relu", ff_bias_after_relu, r"Likely mistake: b1 is added after the ReLU"),
            Mutant("no_b2", ff_no_b2, r"Likely mistake: b2 is missing"),
            Mutant("transposed_weights", ff_transposed_weights,
                   r"raised RuntimeError(.|\n)*Hint: in the paper's notation W1 is \(d_model, d_ff\)"),
            Mutant("numpy", ff_numpy, r"has dtype torch.float64, expected torch.float32|does not carry gradients"),
            Mutant("wraps_the_reference", ff_wrapping_the_reference,
                   r"your code calls course_utils\.reference's own feed_forward"),
        ],
        correct=[ff_clamp_matmul, ff_einsum_linear],
    ),
    "check_feed_forward_network": Catalogue(
        reference=ReferenceFFN,
        mutants=[
            Mutant("stub", FFNStub, r"is not implemented yet"),
            Mutant("forward_stub", FFNForwardStub,
                   r"FeedForwardNetwork\.forward in eval mode.* is not implemented yet"),
            Mutant("gelu", FFNGelu, r"Likely mistake: this is GELU, not ReLU"),
            Mutant("no_activation", FFNNoActivation,
                   r"Likely mistake: there is no activation between linear1 and linear2"),
            Mutant("sigmoid", FFNSigmoid, r"Likely mistake: this is a sigmoid"),
            Mutant("relu_after_linear2", FFNReluAfterLinear2,
                   r"Likely mistake: the ReLU is applied after linear2 instead of between"),
            Mutant("extra_relu_on_output", FFNExtraReluOnOutput,
                   r"Likely mistake: there is a ReLU after linear2 as well"),
            Mutant("dropout_after_linear2", FFNDropoutAfterLinear2,
                   r"training mode(.|\n)*Likely mistake: dropout is applied after linear2, to the output"),
            Mutant("dropout_on_input", FFNDropoutOnInput, r"Likely mistake: dropout is applied to the input x"),
            Mutant("dropout_twice", FFNDropoutTwice, r"Likely mistake: dropout is applied twice"),
            Mutant("dropout_never_applied", FFNDropoutNeverApplied,
                   r"Likely mistake: in training mode your output equals the eval-mode output"),
            Mutant("no_dropout_module", FFNNoDropoutModule,
                   r"has no attribute dropout: in __init__, create self\.dropout = nn\.Dropout\(dropout\)"),
            Mutant("dropout_as_float", FFNDropoutAsFloat,
                   r"dropout should be an nn\.Dropout\(dropout\) module, but it is float"),
            Mutant("dropout_argument_ignored", FFNDropoutArgumentIgnored,
                   r"dropout=0\.5\)\.dropout has p=0\.1, expected 0\.5"),
            Mutant("functional_dropout_always_on", FFNFunctionalDropoutAlwaysOn,
                   r"in eval mode \(model\.eval\(\)\) two calls on the same input give different outputs"),
            Mutant("linear_sizes_swapped", FFNLinearSizesSwapped,
                   r"FeedForwardNetwork\.linear1 is nn\.Linear\(24, 16\), expected nn\.Linear\(16, 24\)"),
            Mutant("no_linear1", FFNNoLinear1,
                   r"has no attribute linear1: in __init__, create self\.linear1 = nn\.Linear\(d_model, d_ff\)"),
            Mutant("hidden_is_d_model", FFNHiddenIsDModel,
                   r"linear1 is nn\.Linear\(16, 16\), expected nn\.Linear\(16, 24\)"),
            Mutant("unpacks_shape", FFNUnpacksShape,
                   r"raised ValueError(.|\n)*Hint: the FFN acts on the last axis only"),
            Mutant("output_detached", FFNOutputDetached, r"does not carry gradients back"),
            Mutant("wraps_the_reference", FFNWrappingTheReference,
                   r"your code calls course_utils\.reference's own FeedForwardNetwork"),
        ],
        correct=[FFNSequentialInside, FFNDropoutBeforeRelu],
    ),
}

BUG = Bug("ffn_solution", "self.linear2(self.dropout(torch.relu(self.linear1(x))))",
          "self.dropout(self.linear2(torch.relu(self.linear1(x))))")
