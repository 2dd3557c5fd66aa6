"""Python logging to the console and, for a training run, to <run folder>/train.log."""
import logging
import sys

LOGGER = 'dmin'


def setup_logging(log_file=None):
    logger = logging.getLogger(LOGGER)
    logger.setLevel(logging.INFO)
    logger.handlers.clear()
    logger.propagate = False
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(logging.Formatter('%(message)s'))
    logger.addHandler(console)
    if log_file is not None:
        to_file = logging.FileHandler(log_file)
        to_file.setFormatter(logging.Formatter('%(asctime)s %(levelname)s %(message)s'))
        logger.addHandler(to_file)
    return logger
