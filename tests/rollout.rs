//! End-to-end tests of `agentgen rollout`.
