"""Deprecated path of :mod:`captum_ext.core.captum_deeplift`."""

from captum_ext._moved import alias_module

alias_module(__name__, "captum_ext.core.captum_deeplift")
