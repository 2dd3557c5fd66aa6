"""Cross-modality localization (AVE's third task, A2V and V2A): train (default) or
--evaluate a checkpoint. See docs/cml.md.

Every config key of configs/cml.yaml and cml_<model>.yaml (cml_dcmr.yaml under
--protocol dcmr) is a flag; see --help.
"""
from cml import main

if __name__ == '__main__':
    main()
