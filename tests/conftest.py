"""Test-session wiring: CUDA tests are collected only where CUDA exists."""

from __future__ import annotations

import torch

CUDA = torch.cuda.is_available()
collect_ignore_glob = [] if CUDA else ["**/*_cuda.py"]


def pytest_report_header() -> str:
    if CUDA:
        return f"CUDA: {torch.cuda.get_device_name()} (CUDA tests collected)"
    return "CUDA: none on this machine, so the *_cuda.py tests are not collected"
