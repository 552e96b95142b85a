"""The gateway tests use the real TTS and platform issuers of the service tests."""

from tests.service.conftest import platform, start_tts, tts, workload_keys

__all__ = ["platform", "start_tts", "tts", "workload_keys"]
