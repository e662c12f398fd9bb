//! End-to-end tests of `agentgen inspect`.
