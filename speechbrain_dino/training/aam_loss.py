"""AAM-softmax whose margin is an input of every call, with optional sub-centres per class.

The fine-tuning schedule warms the additive angular margin up step by step
(:class:`~speechbrain_dino.training.schedules.FineTuneSchedule`), so the margin is an argument
of :meth:`AAMSoftmaxLoss.forward` rather than a constant of the loss. The arithmetic is
SpeechBrain's own (``AdditiveAngularMargin`` inside ``LogSoftmaxWrapper``), built for the step's
margin.

Sub-centre AAM-softmax (Deng et al., 2020, "Sub-center ArcFace") gives each class K centres: the
classifier stays SpeechBrain's cosine ``Classifier``, built with ``n_classes * K`` rows laid out
class-major (row ``c * K + k`` is centre ``k`` of class ``c``). A class's cosine is the largest
of its K centres' cosines (:func:`max_over_subcenters`), and the margin loss then runs on those
class cosines as usual, so a noisy (pseudo-)label can sit near a non-dominant centre without
pulling the class's main centre towards it. With K = 1 this is exactly plain AAM-softmax.
"""
from __future__ import annotations

import torch
from speechbrain.nnet.losses import AdditiveAngularMargin, LogSoftmaxWrapper
from torch import nn

from speechbrain_dino.errors import DataError


def check_subcenters(value: object) -> int:
    """``value`` if it is a valid number of sub-centres per class (an integer >= 1), else DataError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DataError(
            f"subcenters must be an integer >= 1 (1 = plain AAM-softmax), got {value!r}: "
            "set e.g. --subcenters=3"
        )
    return value


def max_over_subcenters(cosines: torch.Tensor, subcenters: int) -> torch.Tensor:
    """Class cosines: the max over each class's sub-centre cosines.

    Arguments
    ---------
    cosines : torch.Tensor
        ``[..., C * K]`` cosines to every centre (a ``Classifier`` output is ``[B, 1, C * K]``),
        class-major: index ``c * K + k`` is centre ``k`` of class ``c``.
    subcenters : int
        K, the number of centres per class.

    Returns
    -------
    torch.Tensor
        ``[..., C]`` (``[B, 1, C]`` for a ``Classifier`` output); with K = 1, ``cosines`` unchanged.
    """
    *leading, n_centres = cosines.shape
    if n_centres % subcenters:
        raise ValueError(f"{n_centres} centres are not a multiple of subcenters={subcenters}")
    return cosines.reshape(*leading, n_centres // subcenters, subcenters).max(dim=-1).values


class AAMSoftmaxLoss(nn.Module):
    """Additive angular margin softmax loss over class cosines, the margin given per call.

    Arguments
    ---------
    scale : float
        The cosine scale ``s``. Paper: 30.
    subcenters : int
        Centres per class ``K`` (an integer >= 1; 1 = plain AAM-softmax). The classifier must
        have ``n_classes * subcenters`` rows.
    """

    def __init__(self, scale: float = 30, subcenters: int = 1) -> None:
        super().__init__()
        self.scale = scale
        self.subcenters = check_subcenters(subcenters)

    def class_cosines(self, centre_cosines: torch.Tensor) -> torch.Tensor:
        """``[B, 1, C * K]`` classifier cosines -> ``[B, 1, C]`` class cosines (max over centres)."""
        return max_over_subcenters(centre_cosines, self.subcenters)

    def forward(self, class_cosines: torch.Tensor, targets: torch.Tensor, margin: float) -> torch.Tensor:
        """Mean AAM-softmax cross-entropy.

        Arguments
        ---------
        class_cosines : torch.Tensor
            ``[B, 1, C]`` cosines in [-1, 1] (:meth:`class_cosines`).
        targets : torch.Tensor
            ``[B, 1]`` class indices.
        margin : float
            Additive angular margin ``m`` of this step (radians).

        Returns
        -------
        torch.Tensor
            Scalar loss.
        """
        margin_loss = LogSoftmaxWrapper(AdditiveAngularMargin(margin=margin, scale=self.scale))
        return margin_loss(class_cosines, targets)

    def extra_repr(self) -> str:
        return f"scale={self.scale}, subcenters={self.subcenters}"
