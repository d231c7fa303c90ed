"""Sub-centre AAM-softmax (Deng et al., 2020, "Sub-center ArcFace"): K centres per class.

The classifier stays SpeechBrain's cosine ``Classifier``, built with ``n_classes * K`` rows laid
out class-major (row ``c * K + k`` is centre ``k`` of class ``c``). A class's cosine is the largest
of its K centres' cosines, and the additive angular margin loss then runs on those class cosines
as usual, so a noisy (pseudo-)label can sit near a non-dominant centre without pulling the class's
main centre towards it. With K = 1 this is exactly the plain classifier.
"""
from __future__ import annotations

import torch

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
