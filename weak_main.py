"""Weakly-supervised DMIN (or --model M) on AVE-layout data (video labels only, MIL): train or
--evaluate a checkpoint.

Every config key of the method's defaults (configs/base.yaml, weak.yaml, <model>.yaml,
<model>_weak.yaml) is a flag; see --help.
"""
from main import main

if __name__ == '__main__':
    main('weak')
