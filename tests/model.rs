//! End-to-end tests of `agentgen model`.
