//! The `[env]` section: which environment the episodes run in, and their limits.

use super::code_interpreter::ToolFormat;
use crate::config::ConfigError;
use cove_verifiers::code::Limits;
use std::time::Duration;

/// Which environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EnvKind {
    /// One prompt, one response, scored by the task's reward (the local engine).
    #[default]
    SingleTurn,
    /// The Python tool ([`super::CodeInterpreter`]) over several turns.
    CodeInterpreter,
}

/// The `[env]` section.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnvSection {
    /// Which environment.
    pub kind: EnvKind,
    /// How the policy calls the Python tool (`auto`: the chat template's `<tool_call>`
    /// format when it has one, else fenced programs).
    pub tool_format: ToolFormat,
    /// Most assistant turns per episode (each ends at a tool call or an EOS token).
    pub max_turns: usize,
    /// Most tool calls per episode; a turn asking for one more ends the episode
    /// (finish reason `tool_calls`).
    pub max_tool_calls: usize,
    /// Most tokens after the prompt, the policy's and the observations' together
    /// (finish reason `length`); each turn is also capped at
    /// `trainer.rollout.max_new_tokens`.
    pub max_total_tokens: usize,
    /// Most characters of one tool output shown to the policy (the rest is cut, and
    /// the cut is said).
    pub max_output_chars: usize,
    /// Seconds one tool call may run (the replay of the session's earlier programs
    /// included).
    pub time_s: f64,
    /// Memory one tool call may use, in MiB.
    pub memory_mb: usize,
    /// Bytes one tool call may print.
    pub output_bytes: usize,
}

impl Default for EnvSection {
    fn default() -> Self {
        EnvSection {
            kind: EnvKind::SingleTurn,
            tool_format: ToolFormat::Auto,
            max_turns: 4,
            max_tool_calls: 3,
            max_total_tokens: 1024,
            max_output_chars: 512,
            time_s: 4.0,
            memory_mb: 256,
            output_bytes: 64 << 10,
        }
    }
}

fn invalid(field: &'static str, why: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path: "<config>".into(),
        field,
        why: why.into(),
    }
}

impl EnvSection {
    /// Checks every field; the error names it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_turns == 0 {
            return Err(invalid("env.max_turns", "must be at least 1"));
        }
        if self.max_total_tokens == 0 {
            return Err(invalid("env.max_total_tokens", "must be at least 1"));
        }
        if self.max_output_chars == 0 {
            return Err(invalid("env.max_output_chars", "must be at least 1"));
        }
        if !self.time_s.is_finite() || self.time_s <= 0.0 || self.time_s > 600.0 {
            return Err(invalid(
                "env.time_s",
                format!("{} is not in (0, 600]", self.time_s),
            ));
        }
        if self.memory_mb < 16 || self.memory_mb > 4096 {
            return Err(invalid(
                "env.memory_mb",
                format!("{} is not in [16, 4096]", self.memory_mb),
            ));
        }
        if self.output_bytes == 0 {
            return Err(invalid("env.output_bytes", "must be at least 1"));
        }
        Ok(())
    }

    /// The sandbox limits of one tool call.
    pub fn limits(&self) -> Limits {
        Limits {
            time: Duration::from_secs_f64(self.time_s),
            memory_bytes: self.memory_mb << 20,
            stdout_bytes: self.output_bytes,
            ..Limits::default()
        }
    }

    /// The engine's episode limits.
    pub fn episode_limits(&self) -> crate::rollout::EpisodeLimits {
        crate::rollout::EpisodeLimits {
            max_turns: self.max_turns,
            max_tool_calls: self.max_tool_calls,
            max_total_tokens: self.max_total_tokens,
        }
    }
}
