"""Fully-supervised DMIN (or --model M) on AVE-layout data: train (default) or --evaluate a
checkpoint.

Every config key of the method's defaults (configs/base.yaml, supervised.yaml, <model>.yaml,
<model>_supervised.yaml) is a flag; see --help.
"""
from main import main

if __name__ == '__main__':
    main('supervised')
