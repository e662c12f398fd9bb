//! `agentgen-codec`: the DeepSeek-V3.2 chat format.
//!
//! Owns the plain message types ([`Message`], [`Role`], [`ToolCall`]), the byte-exact encoder,
//! the strict / lenient / streaming completion parser, the shipped V3.2 tokenizer and loss masks.
//! Must not depend on candle, tokio or the environments.

pub mod message;

pub use message::{AssistantMessage, Message, Role, ToolCall};
