// Test harness: server process control.
