"""Callables used by the report tests as ``--data module:callable``."""

from captum_ext.zoo import DigitsDataset


def digit_images():
    return DigitsDataset("test").images[:8]
