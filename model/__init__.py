"""DMIN (Dense Modality Interaction Network, Liu et al., IEEE TMM 2022), one file per part."""
from model.criterion import build_criterion
from model.dmin import DMIN, build_model, count_parameters, model_args

__all__ = ['DMIN', 'build_model', 'build_criterion', 'count_parameters', 'model_args']
