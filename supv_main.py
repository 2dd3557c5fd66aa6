"""Fully-supervised DMIN on AVE: train (default) or --evaluate a checkpoint.

Every config key of configs/base.yaml and configs/supervised.yaml is a flag; see --help.
"""
from main import main
from utils.config import program_name

if __name__ == '__main__':
    main('supervised', prog=program_name('supv_main.py'))
