"""pytest plugin for mockllm (fixtures arrive with the mock server)."""
