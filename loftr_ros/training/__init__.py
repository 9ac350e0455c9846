"""Training of loftr_ros models: synthetic homography pairs, ground truth, losses, trainer.

``homography`` and ``supervision`` are numpy-only (evaluation uses them); ``losses`` and
``trainer`` import torch.
"""
