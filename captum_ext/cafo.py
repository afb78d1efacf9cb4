"""Deprecated path of :mod:`captum_ext.context_aware.cafo`."""

from captum_ext._moved import alias_module

alias_module(__name__, "captum_ext.context_aware.cafo")
