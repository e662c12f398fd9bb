//! Model implementations.

pub mod deepseek_v32;
