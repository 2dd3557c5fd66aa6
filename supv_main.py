"""Fully-supervised DMIN on AVE: train (default) or --evaluate a checkpoint.

Every config key of configs/base.yaml and configs/supervised.yaml is a flag; see --help.
"""
from main import main

if __name__ == '__main__':
    main('supervised')
