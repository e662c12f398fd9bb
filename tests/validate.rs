//! End-to-end tests of `agentgen validate`.
