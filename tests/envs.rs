//! End-to-end tests of `agentgen envs`.
