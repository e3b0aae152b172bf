"""The reference voice-gateway: the system under test for the demo and the test suite."""
