"""Known-wrong and correct answers for chapter 08_scheduler's checks.

Each mutant is a realistic student mistake; its ``expect`` pins the diagnosis the check
gives (a regular expression searched in the AssertionError's message). The correct answers
are written differently from the reference and must pass: for the scheduler, a step count
read from ``_step_count``, a ``LambdaLR`` subclass and PyTorch's "chainable" form (each rate
from the previous one); for the loss, an explicit target distribution, the built-in on
flattened inputs, and ``nll_loss`` mixed with the uniform term.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

import course_utils.reference
from course_utils import reference
from course_utils.reference.schedule import noam_lr
from tests.support import Bug, Catalogue, Mutant

# --------------------------------------------------------------------------------------
# NoamScheduler(optimizer, d_model, warmup_steps, factor=1.0)
# --------------------------------------------------------------------------------------


class _Noam(LRScheduler):
    """The right constructor; mutants override ``rate`` (or get_lr, step, ...)."""

    def __init__(self, optimizer, d_model, warmup_steps, factor=1.0):
        self.d_model = d_model
        self.warmup_steps = warmup_steps
        self.factor = factor
        super().__init__(optimizer)

    def rate(self, step):
        return self.factor * self.d_model ** -0.5 * min(step ** -0.5, step * self.warmup_steps ** -1.5)

    def get_lr(self):
        return [self.rate(self.last_epoch + 1)] * len(self.optimizer.param_groups)


class NoamStub(LRScheduler):
    def __init__(self, optimizer, d_model, warmup_steps, factor=1.0):
        # YOUR CODE HERE
        raise NotImplementedError()
        super().__init__(optimizer)


class NoamGetLrStub(_Noam):
    def get_lr(self):
        # YOUR CODE HERE
        raise NotImplementedError()


class NoamStepsFromZero(_Noam):
    def get_lr(self):
        return [self.rate(self.last_epoch)] * len(self.optimizer.param_groups)  # 0 ** -0.5


class NoamStepsFromZeroTorch(_Noam):
    """Counted from 0 with tensor arithmetic: 0 ** -0.5 is inf, min(inf, 0) = 0."""

    def get_lr(self):
        step = torch.tensor(float(self.last_epoch), dtype=torch.float64)
        rate = self.factor * self.d_model ** -0.5 * torch.minimum(step ** -0.5, step * self.warmup_steps ** -1.5)
        return [rate.item()] * len(self.optimizer.param_groups)


class NoamStepsFromZeroClamped(_Noam):
    def get_lr(self):
        return [self.rate(max(self.last_epoch, 1))] * len(self.optimizer.param_groups)


class NoamCountedFromTwo(_Noam):
    def get_lr(self):
        # _step_count is already 1 after construction: + 1 counts one step too many.
        return [self.rate(self._step_count + 1)] * len(self.optimizer.param_groups)


class NoamExponentsSwapped(_Noam):
    def rate(self, step):
        return self.factor * self.d_model ** -0.5 * min(step ** -1.5, step * self.warmup_steps ** -0.5)


class NoamWarmupExponent(_Noam):
    def rate(self, step):
        return self.factor * self.d_model ** -0.5 * min(step ** -0.5, step * self.warmup_steps ** -0.5)


class NoamMaxInsteadOfMin(_Noam):
    def rate(self, step):
        return self.factor * self.d_model ** -0.5 * max(step ** -0.5, step * self.warmup_steps ** -1.5)


class NoamNoDModel(_Noam):
    def rate(self, step):
        return self.factor * min(step ** -0.5, step * self.warmup_steps ** -1.5)


class NoamSqrtDModel(_Noam):
    def rate(self, step):
        return self.factor * math.sqrt(self.d_model) * min(step ** -0.5, step * self.warmup_steps ** -1.5)


class NoamFactorIgnored(_Noam):
    def rate(self, step):
        return self.d_model ** -0.5 * min(step ** -0.5, step * self.warmup_steps ** -1.5)


class NoamTimesBaseLr(_Noam):
    def get_lr(self):
        return [base * self.rate(self.last_epoch + 1) for base in self.base_lrs]


class NoamDefaultFactorTwo(_Noam):
    def __init__(self, optimizer, d_model, warmup_steps, factor=2.0):
        super().__init__(optimizer, d_model, warmup_steps, factor)


class NoamAttributesAfterSuper(_Noam):
    def __init__(self, optimizer, d_model, warmup_steps, factor=1.0):
        LRScheduler.__init__(self, optimizer)  # calls get_lr() before the attributes exist
        self.d_model = d_model
        self.warmup_steps = warmup_steps
        self.factor = factor


class NoamOneGroupOnly(_Noam):
    def get_lr(self):
        return [self.rate(self.last_epoch + 1)]


class NoamOwnStep(_Noam):
    """The Annotated Transformer's NoamOpt habit: step() overridden, LRScheduler bypassed."""

    def __init__(self, optimizer, d_model, warmup_steps, factor=1.0):
        self._step = 0
        super().__init__(optimizer, d_model, warmup_steps, factor)

    def step(self, epoch=None):
        self._step += 1
        for group in self.optimizer.param_groups:
            group["lr"] = self.rate(self._step)


class NoamStateDictHyperparametersOnly(_Noam):
    def state_dict(self):
        return {"d_model": self.d_model, "warmup_steps": self.warmup_steps, "factor": self.factor}


class NoamReturnsTensors(_Noam):
    def get_lr(self):
        step = torch.tensor(self.last_epoch + 1.0)
        rate = self.factor * self.d_model ** -0.5 * torch.minimum(step ** -0.5, step * self.warmup_steps ** -1.5)
        return [rate] * len(self.optimizer.param_groups)


class NoamNotAScheduler:
    """Has the right methods, but does not subclass LRScheduler."""

    def __init__(self, optimizer, d_model, warmup_steps, factor=1.0):
        self.optimizer, self.d_model, self.warmup_steps, self.factor = optimizer, d_model, warmup_steps, factor
        self.step_num = 0
        self.step()

    def step(self):
        self.step_num += 1
        for group in self.optimizer.param_groups:
            group["lr"] = self.factor * self.d_model ** -0.5 * min(
                self.step_num ** -0.5, self.step_num * self.warmup_steps ** -1.5)


class NoamCallsReferenceRate(_Noam):
    def rate(self, step):
        return course_utils.reference.schedule.noam_lr(step, self.d_model, self.warmup_steps, self.factor)


class NoamWrapsTheReference(LRScheduler):
    def __init__(self, optimizer, d_model, warmup_steps, factor=1.0):
        self.inner = course_utils.reference.NoamScheduler(optimizer, d_model, warmup_steps, factor)
        super().__init__(optimizer)

    def get_lr(self):
        return self.inner.get_lr()


class NoamOwnCounter(LRScheduler):
    """A tutorial habit: an own step counter, advanced in get_lr (which LRScheduler calls once at
    construction and once per step), and numpy for the arithmetic."""

    def __init__(self, optimizer, d_model, warmup_steps, factor=1.0):
        self.current_step = 0
        self.d_model, self.warmup_steps, self.factor = d_model, warmup_steps, factor
        super().__init__(optimizer)

    def get_lr(self):
        self.current_step += 1
        s = self.current_step
        rate = self.factor * float(np.power(self.d_model, -0.5) * np.minimum(np.power(s, -0.5),
                                                                            s * np.power(self.warmup_steps, -1.5)))
        return [rate] * len(self.optimizer.param_groups)


class NoamFromStepCount(LRScheduler):
    """Counts with LRScheduler's _step_count (1 after construction) and branches on the warm-up."""

    def __init__(self, optimizer: torch.optim.Optimizer, d_model: int, warmup_steps: int,
                 factor: float = 1.0) -> None:
        self.scale = factor / math.sqrt(d_model)
        self.warmup = warmup_steps
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        s = self._step_count
        rate = self.scale * (s / self.warmup ** 1.5 if s <= self.warmup else 1 / math.sqrt(s))
        return [rate for _ in self.base_lrs]


class NoamViaLambdaLR(LambdaLR):
    """LambdaLR scales the optimizer's lr: start every group at 1.0 and let the lambda do the rest."""

    def __init__(self, optimizer, d_model, warmup_steps, factor=1.0):
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] = 1.0
        self.d_model, self.warmup_steps, self.factor = d_model, warmup_steps, factor
        super().__init__(optimizer, lambda epoch: noam_formula(epoch + 1, d_model, warmup_steps, factor))


def noam_formula(step: int, d_model: int, warmup_steps: int, factor: float) -> float:
    return factor * d_model ** -0.5 * min(step ** -0.5, step * warmup_steps ** -1.5)


class NoamChainable(_Noam):
    """PyTorch's chainable style: each rate is the previous one times rate(s) / rate(s - 1)."""

    def get_lr(self):
        s = self.last_epoch + 1
        if s == 1:
            return [self.rate(1)] * len(self.optimizer.param_groups)
        ratio = self.rate(s) / self.rate(s - 1)
        return [group["lr"] * ratio for group in self.optimizer.param_groups]


# --------------------------------------------------------------------------------------
# LabelSmoothingLoss(smoothing=0.1, pad_idx=0)
# --------------------------------------------------------------------------------------


class _Loss(nn.Module):
    """The right constructor; mutants override ``forward``."""

    def __init__(self, smoothing=0.1, pad_idx=0):
        super().__init__()
        self.smoothing = smoothing
        self.pad_idx = pad_idx

    def flat(self, logits, target):
        return logits.reshape(-1, logits.size(-1)), target.reshape(-1)

    def per_token(self, log_probs, target):
        eps = self.smoothing
        nll = -log_probs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
        return (1 - eps) * nll + eps * -log_probs.mean(-1)

    def forward(self, logits, target):
        logits, target = self.flat(logits, target)
        real = target != self.pad_idx
        return self.per_token(logits.log_softmax(-1), target)[real].mean()


def _distribution_loss(module, logits, target, q_fn, kl=False):
    """Cross-entropy (or KL) with the target distribution ``q_fn(one_hot, V)``, over real tokens."""
    logits, target = module.flat(logits, target)
    V = logits.size(-1)
    q = q_fn(F.one_hot(target, V).to(logits.dtype), V)
    loss = -(q * logits.log_softmax(-1)).sum(-1)
    if kl:
        loss = loss + (q * q.clamp_min(1e-30).log()).sum(-1)
    return loss[target != module.pad_idx].mean()


class LossStub(nn.Module):
    def __init__(self, smoothing=0.1, pad_idx=0):
        super().__init__()
        # YOUR CODE HERE
        raise NotImplementedError()


class LossForwardStub(_Loss):
    def forward(self, logits, target):
        # YOUR CODE HERE
        raise NotImplementedError()


class LossPaddingCounted(_Loss):
    def forward(self, logits, target):
        logits, target = self.flat(logits, target)
        return self.per_token(logits.log_softmax(-1), target).mean()


class LossPlainCrossEntropy(_Loss):
    def forward(self, logits, target):
        logits, target = self.flat(logits, target)
        return F.cross_entropy(logits, target, ignore_index=self.pad_idx)


class LossSum(_Loss):
    def forward(self, logits, target):
        logits, target = self.flat(logits, target)
        real = target != self.pad_idx
        return self.per_token(logits.log_softmax(-1), target)[real].sum()


class LossMeanOverAllTokens(_Loss):
    def forward(self, logits, target):
        logits, target = self.flat(logits, target)
        mask = (target != self.pad_idx).to(logits.dtype)
        return (self.per_token(logits.log_softmax(-1), target) * mask).mean()


class LossPaperConvention(_Loss):
    """tensor2tensor's targets: 1 - eps on the true class, eps / (V - 1) on each other one."""

    def forward(self, logits, target):
        eps = self.smoothing
        return _distribution_loss(self, logits, target, lambda oh, V: (1 - eps) * oh + eps / (V - 1) * (1 - oh))


class LossTensor2Tensor(_Loss):
    """The paper's code exactly: eps / (V - 1) and the 'normalizing' entropy subtracted."""

    def forward(self, logits, target):
        eps = self.smoothing
        return _distribution_loss(self, logits, target,
                                  lambda oh, V: (1 - eps) * oh + eps / (V - 1) * (1 - oh), kl=True)


class LossAnnotatedTransformer(_Loss):
    """The Annotated Transformer's LabelSmoothing: eps / (V - 2), no mass on <pad>, KLDivLoss."""

    def forward(self, logits, target):
        logits, target = self.flat(logits, target)
        V = logits.size(-1)
        true_dist = torch.full_like(logits, self.smoothing / (V - 2))
        true_dist.scatter_(1, target.unsqueeze(1), 1.0 - self.smoothing)
        true_dist[:, self.pad_idx] = 0
        real = target != self.pad_idx
        kl = nn.KLDivLoss(reduction="sum")(logits.log_softmax(-1)[real], true_dist[real])
        return kl / real.sum()


class LossNoMassOnPadClass(_Loss):
    """The Annotated Transformer's target distribution, but as a cross-entropy."""

    def forward(self, logits, target):
        eps, pad = self.smoothing, self.pad_idx

        def q(oh, V):
            dist = (1 - eps) * oh + eps / (V - 2) * (1 - oh)
            dist[:, pad] = 0
            return dist

        return _distribution_loss(self, logits, target, q)


class LossKLDivergence(_Loss):
    """PyTorch's target distribution, but nn.KLDivLoss instead of the cross-entropy."""

    def forward(self, logits, target):
        logits, target = self.flat(logits, target)
        V = logits.size(-1)
        q = (1 - self.smoothing) * F.one_hot(target, V).to(logits.dtype) + self.smoothing / V
        kl = F.kl_div(logits.log_softmax(-1), q, reduction="none").sum(-1)
        return kl[target != self.pad_idx].mean()


class LossForgotConfidence(_Loss):
    def forward(self, logits, target):
        eps = self.smoothing
        return _distribution_loss(self, logits, target, lambda oh, V: oh + eps / V)


class LossBuiltinWithoutFlattening(_Loss):
    def forward(self, logits, target):
        return F.cross_entropy(logits, target, ignore_index=self.pad_idx, label_smoothing=self.smoothing)


class LossPerToken(_Loss):
    def forward(self, logits, target):
        logits, target = self.flat(logits, target)
        return F.cross_entropy(logits, target, ignore_index=self.pad_idx, label_smoothing=self.smoothing,
                               reduction="none")


class LossNoLogSoftmax(_Loss):
    def forward(self, logits, target):
        logits, target = self.flat(logits, target)
        real = target != self.pad_idx
        return self.per_token(logits, target)[real].mean()


class LossFloat32(_Loss):
    def forward(self, logits, target):
        return super().forward(logits.float(), target)


class LossItem(_Loss):
    def forward(self, logits, target):
        return super().forward(logits, target).item()


class LossThreeDimsOnly(_Loss):
    def forward(self, logits, target):
        B, L, V = logits.shape
        return super().forward(logits.view(B * L, V), target.view(B * L))


class LossSmoothTermDetached(_Loss):
    def per_token(self, log_probs, target):
        eps = self.smoothing
        nll = -log_probs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
        return (1 - eps) * nll + eps * -log_probs.detach().mean(-1)


class LossWrapsTheReference(nn.Module):
    def __init__(self, smoothing=0.1, pad_idx=0):
        super().__init__()
        self.inner = course_utils.reference.LabelSmoothingLoss(smoothing, pad_idx)

    def forward(self, logits, target):
        return self.inner(logits, target)


class LossExplicitDistribution(nn.Module):
    """The smoothed target written out, the mean over real tokens as a masked sum."""

    def __init__(self, smoothing: float = 0.1, pad_idx: int = 0) -> None:
        super().__init__()
        self.eps = smoothing
        self.pad = pad_idx

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        V = logits.shape[-1]
        log_p = F.log_softmax(logits, dim=-1).reshape(-1, V)
        t = target.flatten()
        q = torch.full_like(log_p, self.eps / V)
        q.scatter_(1, t[:, None], 1 - self.eps + self.eps / V)
        mask = (t != self.pad).to(log_p.dtype)
        return ((-(q * log_p).sum(dim=1)) * mask).sum() / mask.sum()


class LossBuiltin(nn.Module):
    """nn.CrossEntropyLoss itself on flattened inputs."""

    def __init__(self, smoothing: float = 0.1, pad_idx: int = 0) -> None:
        super().__init__()
        self.criterion = nn.CrossEntropyLoss(ignore_index=pad_idx, label_smoothing=smoothing)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return self.criterion(logits.reshape(-1, logits.size(-1)), target.reshape(-1))


class LossNllPlusUniform(nn.Module):
    """F.nll_loss for the true class, the uniform term averaged separately."""

    def __init__(self, smoothing: float = 0.1, pad_idx: int = 0) -> None:
        super().__init__()
        self.smoothing, self.pad_idx = smoothing, pad_idx

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        log_p = logits.log_softmax(-1).flatten(0, -2)
        t = target.flatten()
        nll = F.nll_loss(log_p, t, ignore_index=self.pad_idx)
        uniform = -log_p[t != self.pad_idx].mean()
        return (1 - self.smoothing) * nll + self.smoothing * uniform


_W = r"NoamScheduler\(optimizer, d_model=512, warmup_steps=8, factor=2\.0\)"
_LS = r"LabelSmoothingLoss\(smoothing=0\.1, pad_idx=0\)"

CATALOGUE: dict[str, Catalogue] = {
    "check_noam_scheduler": Catalogue(
        reference=reference.NoamScheduler,
        mutants=[
            Mutant("stub", NoamStub, _W + r" is not implemented yet"),
            Mutant("get_lr_stub", NoamGetLrStub, _W + r" is not implemented yet"),
            Mutant("steps_from_zero", NoamStepsFromZero,
                   r"raised ZeroDivisionError(.|\n)*Hint: the steps are counted from 0 here"),
            Mutant("steps_from_zero_torch", NoamStepsFromZeroTorch,
                   r"the rate of step 1 \(held by the optimizer right after NoamScheduler\(\.\.\.\) is "
                   r"created\) is 0, expected(.|\n)*Likely mistake: the steps are counted from 0"),
            Mutant("steps_from_zero_clamped", NoamStepsFromZeroClamped,
                   r"the rate of step 2 (.|\n)*Likely mistake: the steps are counted from 0"),
            Mutant("counted_from_two", NoamCountedFromTwo, r"Likely mistake: the steps are counted from 2"),
            Mutant("exponents_swapped", NoamExponentsSwapped, r"Likely mistake: the two exponents are swapped"),
            Mutant("warmup_exponent", NoamWarmupExponent,
                   r"Likely mistake: warmup_steps has the wrong exponent"),
            Mutant("max_instead_of_min", NoamMaxInsteadOfMin, r"Likely mistake: max instead of min"),
            Mutant("no_d_model", NoamNoDModel, r"Likely mistake: the d_model\*\*-0\.5 factor is missing"),
            Mutant("sqrt_d_model", NoamSqrtDModel, r"Likely mistake: d_model has the wrong sign in its exponent"),
            Mutant("factor_ignored", NoamFactorIgnored, r"Likely mistake: factor is ignored"),
            Mutant("times_base_lr", NoamTimesBaseLr,
                   r"Likely mistake: the rates were multiplied by the learning rate the optimizer was created with"),
            Mutant("default_factor_two", NoamDefaultFactorTwo, r"factor should default to 1\.0"),
            Mutant("attributes_after_super", NoamAttributesAfterSuper,
                   r"raised AttributeError(.|\n)*Hint: LRScheduler\.__init__ already calls get_lr\(\)"),
            Mutant("one_group_only", NoamOneGroupOnly,
                   r"with an optimizer of 3 param groups raised ValueError: zip\(\)(.|\n)*one learning rate per param group"),
            Mutant("own_step", NoamOwnStep,
                   r"get_last_lr\(\) raised AttributeError(.|\n)*If you override step\(\), you bypass it"),
            Mutant("state_dict_hyperparameters_only", NoamStateDictHyperparametersOnly,
                   r"saved at step 11 .* it started counting again"),
            Mutant("returns_tensors", NoamReturnsTensors,
                   r"optimizer\.param_groups\[0\]\['lr'\] is a tensor"),
            Mutant("not_a_scheduler", NoamNotAScheduler,
                   r"should be a class that subclasses torch\.optim\.lr_scheduler\.LRScheduler"),
            Mutant("calls_reference_rate", NoamCallsReferenceRate,
                   r"your code calls course_utils\.reference's own NoamScheduler"),
            Mutant("wraps_the_reference", NoamWrapsTheReference,
                   r"your code calls course_utils\.reference's own NoamScheduler"),
        ],
        correct=[NoamFromStepCount, NoamViaLambdaLR, NoamChainable, NoamOwnCounter],
    ),
    "check_label_smoothing_loss": Catalogue(
        reference=reference.LabelSmoothingLoss,
        mutants=[
            Mutant("stub", LossStub, _LS + r" is not implemented yet"),
            Mutant("forward_stub", LossForwardStub, _LS + r" on logits \(B, L, V\) .* is not implemented yet"),
            Mutant("padding_counted", LossPaddingCounted, r"Likely mistake: padded positions are counted"),
            Mutant("plain_cross_entropy", LossPlainCrossEntropy, r"Likely mistake: no label smoothing"),
            Mutant("sum_instead_of_mean", LossSum, r"Likely mistake: the losses of the real tokens are summed"),
            Mutant("mean_over_all_tokens", LossMeanOverAllTokens,
                   r"Likely mistake: the mean is over all positions, padding included"),
            Mutant("paper_convention", LossPaperConvention,
                   r"Likely mistake: you used the convention of the paper's own code \(tensor2tensor\): "
                   r"eps/\(V-1\)(.|\n)*This check follows nn\.CrossEntropyLoss"),
            Mutant("tensor2tensor", LossTensor2Tensor, r"Likely mistake: .*subtracted the target's entropy"),
            Mutant("annotated_transformer", LossAnnotatedTransformer,
                   r"Likely mistake: you used The Annotated Transformer's convention \(no mass on <pad>"),
            Mutant("no_mass_on_pad_class", LossNoMassOnPadClass,
                   r"Likely mistake: you gave the padding class no smoothing mass \(eps/\(V-2\)"),
            Mutant("kl_divergence", LossKLDivergence, r"Likely mistake: you computed the KL divergence"),
            Mutant("forgot_confidence", LossForgotConfidence,
                   r"Likely mistake: the true class lost its \(1 - eps\) weight"),
            Mutant("builtin_without_flattening", LossBuiltinWithoutFlattening,
                   r"raised RuntimeError: Expected target size(.|\n)*Hint: F\.cross_entropy / F\.nll_loss want the "
                   r"classes on axis 1"),
            Mutant("per_token", LossPerToken, r"has shape \(18,\), expected \(\)(.|\n)*return one number"),
            Mutant("no_log_softmax", LossNoLogSoftmax,
                   r"Likely mistake: the logits were used as log-probabilities"),
            Mutant("float32", LossFloat32, r"has dtype torch\.float32, expected torch\.float64"),
            Mutant("item", LossItem, r"should be a torch\.Tensor, but it is float"),
            Mutant("three_dims_only", LossThreeDimsOnly,
                   r"on flattened logits \(N, V\) = \(18, 11\), target \(N,\) on cpu in float32 raised ValueError"),
            Mutant("smooth_term_detached", LossSmoothTermDetached,
                   r"the gradient of .* with respect to logits has the right shape \(3, 6, 11\) but wrong values"),
            Mutant("wraps_the_reference", LossWrapsTheReference,
                   r"your code calls course_utils\.reference's own LabelSmoothingLoss"),
        ],
        correct=[LossExplicitDistribution, LossBuiltin, LossNllPlusUniform],
    ),
}

BUG = Bug("loss_solution", "return per_token[real].mean()", "return per_token.mean()")
