//! End-to-end tests of `agentgen codec`.
