//! The `thinking_mode` option.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Error;

/// Where the `<think>` / `</think>` tags go (spec §3.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThinkingMode {
    /// The model reasons first: prompts end in `<think>` after the last user turn.
    #[default]
    Thinking,
    /// No reasoning: prompts end in `</think>`.
    Chat,
}

impl ThinkingMode {
    /// The wire name, `"thinking"` or `"chat"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ThinkingMode::Thinking => "thinking",
            ThinkingMode::Chat => "chat",
        }
    }
}

impl fmt::Display for ThinkingMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ThinkingMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "thinking" => Ok(ThinkingMode::Thinking),
            "chat" => Ok(ThinkingMode::Chat),
            other => Err(Error::InvalidThinkingMode { value: other.to_owned() }),
        }
    }
}
