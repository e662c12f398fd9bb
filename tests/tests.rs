//! End-to-end tests: they drive the real `agentgen` binary. One module per topic.

mod util;
