//! End-to-end tests of `agentgen generate`.
