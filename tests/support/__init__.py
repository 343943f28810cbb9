"""Test helpers shared by several test suites (real local servers, not mocks)."""
