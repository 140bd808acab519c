"""Execution: the units of tree work and the in-process runner that claims them one by one."""
