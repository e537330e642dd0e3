"""Exporters: convert a checkpoint to ONNX / OpenVINO, verify it against torch fp32, write a manifest."""

from crossenc.errors import VerificationFailed
from crossenc.exporters.base import ExportResult

__all__ = ["ExportResult", "VerificationFailed"]
