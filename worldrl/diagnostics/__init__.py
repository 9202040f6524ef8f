"""Diagnostics of trained models: does a reward model rank behaviour the way the task does?

:func:`viper_report` scores dataset folders of graded policies with the VIPER
likelihood and writes reward curves, AUROC, rank correlations and per-code
heat-maps (``worldrl viper-report``).
"""

from worldrl.diagnostics.viper_report import auroc, spearman, viper_report

__all__ = ["auroc", "spearman", "viper_report"]
