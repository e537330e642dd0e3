"""Exporters: convert a checkpoint to ONNX / OpenVINO, verify it against torch fp32, write a manifest."""

from crossenc.exporters.base import ExportResult, VerificationFailed

__all__ = ["ExportResult", "VerificationFailed"]
