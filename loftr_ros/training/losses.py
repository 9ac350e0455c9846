"""Training losses (torch): coarse dual-softmax focal loss, unseen-cell mass, fine expectation loss,
distillation.

The fine window correlation here is the torch twin of
``loftr_ros.matching.postprocess.refine_with_fine_features``
(numpy, used at inference); a test checks both give the same positions.
"""
from __future__ import annotations

from typing import Dict, Tuple

import torch
import torch.nn.functional as F


def coarse_focal_loss(conf: torch.Tensor, match_j: torch.Tensor, alpha: float = 0.25,
                      gamma: float = 2.0, negative_weight: float = 1.0) -> torch.Tensor:
    """LoFTR's dense focal loss on the dual-softmax confidence (docs/model.md, "Training loss").

    Args:
        conf: [B,L,S] confidence in [0,1].
        match_j: [B,L] int64 ground-truth image-1 cell per image-0 cell, -1 for none.
    """
    conf = conf.clamp(1e-6, 1.0 - 1e-6)
    positive_mask = torch.zeros_like(conf, dtype=torch.bool)
    rows_b, rows_i = torch.nonzero(match_j >= 0, as_tuple=True)
    positive_mask[rows_b, rows_i, match_j[rows_b, rows_i]] = True
    positive = conf[positive_mask]
    negative = conf[~positive_mask]
    if positive.numel():
        loss_positive = (-alpha * (1.0 - positive) ** gamma * positive.log()).mean()
    else:
        loss_positive = conf.sum() * 0.0
    loss_negative = (-alpha * negative ** gamma * (1.0 - negative).log()).mean()
    return loss_positive + negative_weight * loss_negative


def unseen_mass_loss(conf: torch.Tensor, unseen0: torch.Tensor, unseen1: torch.Tensor
                     ) -> torch.Tensor:
    """Confidence that cells with nothing to match spend on matches (docs/model.md).

    The mass of an image-0 cell is its row sum of ``conf`` (at most 1: each entry is a row
    softmax times a column softmax), of an image-1 cell its column sum. The loss is the mean of
    ``-log(1 - mass)`` over the unseen cells of both images; zero when no cell is unseen.

    Args:
        conf: [B,L,S] confidence in [0,1].
        unseen0: [B,L] bool, image-0 cells not seen in image 1; unseen1: [B,S] bool, the reverse.
    """
    masses = torch.cat([conf.sum(dim=2)[unseen0], conf.sum(dim=1)[unseen1]])
    if masses.numel() == 0:
        return conf.sum() * 0.0
    return -torch.log1p(-masses.clamp(0.0, 1.0 - 1e-6)).mean()


def window_offsets(radius: int, device: torch.device) -> torch.Tensor:
    """[(2r+1)^2, 2] integer (dx, dy) offsets of a square window, row-major over dy then dx."""
    steps = torch.arange(-radius, radius + 1, device=device)
    dy, dx = torch.meshgrid(steps, steps, indexing="ij")
    return torch.stack([dx.reshape(-1), dy.reshape(-1)], dim=1)


def fine_expectation(fine0: torch.Tensor, fine1: torch.Tensor, batch_index: torch.Tensor,
                     cell0: torch.Tensor, cell1: torch.Tensor, ratio: int, radius: int,
                     temperature: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """Expected fine-map position of each match in image 1, and the window log-probabilities.

    Args:
        fine0, fine1: [B,C,Hf,Wf] fine feature maps.
        batch_index: [M] pair index of each match.
        cell0, cell1: [M,2] integer coarse cells (col, row) of the match in image 0 / 1.
        ratio: coarse stride / fine stride.
    Returns:
        (expected [M,2] fine-map coordinates (x, y), log_prob [M,(2r+1)^2], positions [M,W,2]).
    """
    _, channels, fine_h, fine_w = fine0.shape
    centre0 = cell0 * ratio
    centre1 = cell1 * ratio
    feat0 = fine0[batch_index, :, centre0[:, 1], centre0[:, 0]]                  # [M,C]
    positions = centre1[:, None, :] + window_offsets(radius, fine0.device)[None]  # [M,W,2]
    positions = torch.stack([positions[..., 0].clamp(0, fine_w - 1),
                             positions[..., 1].clamp(0, fine_h - 1)], dim=-1)
    feat1 = fine1[batch_index[:, None], :, positions[..., 1], positions[..., 0]]  # [M,W,C]
    logits = (feat1 * feat0[:, None, :]).sum(-1) / (channels ** 0.5 * temperature)
    log_prob = F.log_softmax(logits, dim=1)
    expected = (log_prob.exp()[..., None] * positions.float()).sum(1)
    return expected, log_prob, positions


def nearest_window_cell(positions: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Index [M] of the window cell (positions [M,W,2]) nearest to each target [M,2]."""
    return ((positions.float() - target[:, None, :]) ** 2).sum(-1).argmin(1)


def bilinear_target(positions: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Soft target [M,W] over the window cells: the bilinear weights of the true position on its
    (up to) four surrounding cells, normalised. Its mean position is the target itself, so a
    window distribution that matches it gives an exact local soft-argmax. A target outside every
    cell's reach falls back to the nearest cell."""
    delta = (positions.float() - target[:, None, :]).abs()                     # [M,W,2]
    weights = (1.0 - delta).clamp(min=0.0).prod(dim=-1)                        # [M,W]
    total = weights.sum(dim=1, keepdim=True)
    fallback = F.one_hot(nearest_window_cell(positions, target),
                         positions.shape[1]).to(weights.dtype)
    return torch.where(total > 1e-6, weights / total.clamp(min=1e-6), fallback)


FINE_CE_TARGETS = ("nearest", "bilinear")


def fine_loss(expected: torch.Tensor, log_prob: torch.Tensor, positions: torch.Tensor,
              target: torch.Tensor, classification_weight: float = 0.1,
              ce_target: str = "nearest") -> Dict[str, torch.Tensor]:
    """L2 between expected and true fine position (fine cells), plus a cross-entropy that
    sharpens the window distribution: against the nearest window cell (``ce_target="nearest"``,
    what the shipped model was trained with) or against the bilinear soft target of the true
    position (``"bilinear"``, :func:`bilinear_target`), which does not pull the distribution onto
    one cell."""
    if ce_target not in FINE_CE_TARGETS:
        raise ValueError(f"ce_target must be one of {FINE_CE_TARGETS}, not {ce_target!r}")
    l2 = ((expected - target) ** 2).sum(-1).mean()
    if ce_target == "bilinear":
        classification = -(bilinear_target(positions, target) * log_prob).sum(-1).mean()
    else:
        classification = F.nll_loss(log_prob, nearest_window_cell(positions, target))
    return {"fine_l2": l2, "fine_ce": classification,
            "fine": l2 + classification_weight * classification}


def distillation_loss(student_sim: torch.Tensor, teacher_sim: torch.Tensor,
                      temperature: float = 5.0) -> torch.Tensor:
    """KL(teacher || student) over the flattened similarity logits of each pair, x T^2."""
    batch = student_sim.shape[0]
    student = F.log_softmax(student_sim.reshape(batch, -1) / temperature, dim=1)
    teacher = F.log_softmax(teacher_sim.reshape(batch, -1) / temperature, dim=1)
    return F.kl_div(student, teacher, log_target=True, reduction="batchmean") * temperature ** 2
