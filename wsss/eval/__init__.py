"""Evaluation: confusion-matrix mIoU, per-class tables, threshold sweeps, plots."""

from wsss.eval.confusion import ConfusionMatrix  # noqa: F401
