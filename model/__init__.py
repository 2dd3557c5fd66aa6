"""DMIN (Dense Modality Interaction Network, Liu et al., IEEE TMM 2022), one file per part."""
from model.dmin import DMIN, build_model, count_parameters
from model.criterion import build_criterion

__all__ = ['DMIN', 'build_model', 'build_criterion', 'count_parameters']
