//! End-to-end tests of `agentgen serve`.
