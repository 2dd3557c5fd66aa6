"""Weakly-supervised DMIN on AVE (video labels only, MIL): train or --evaluate a checkpoint.

Every config key of configs/base.yaml and configs/weak.yaml is a flag; see --help.
"""
from main import main
from utils.config import program_name

if __name__ == '__main__':
    main('weak', prog=program_name('weak_main.py'))
