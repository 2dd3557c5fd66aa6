"""Weakly-supervised DMIN on AVE (video labels only, MIL): train or --evaluate a checkpoint.

Every config key of configs/base.yaml and configs/weak.yaml is a flag; see --help.
"""
from main import main

if __name__ == '__main__':
    main('weak')
