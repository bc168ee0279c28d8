//! Taking the program out of a model response.
//!
//! Models answer in markdown; the program is by default the last fenced block tagged
//! `python` (or `py`, `python3`). Without such a block the last untagged fenced block is
//! used, and a response with no fence at all is taken as raw code. An unterminated final
//! fence (a generation cut at the token limit) runs to the end of the response.

/// How the program is found in a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Extract {
    /// The last ```python block (see the module docs for the fallbacks).
    #[default]
    LastPythonBlock,
    /// The whole response is the program.
    Raw,
}

struct Block<'a> {
    lang: &'a str,
    body: String,
}

fn fenced_blocks(response: &str) -> Vec<Block<'_>> {
    let mut blocks = Vec::new();
    let mut open: Option<(&str, Vec<&str>)> = None;
    for line in response.lines() {
        let trimmed = line.trim_start();
        match open.take() {
            None => {
                if let Some(info) = trimmed.strip_prefix("```") {
                    let lang = info.split_whitespace().next().unwrap_or("");
                    open = Some((lang, Vec::new()));
                }
            }
            Some((lang, mut lines)) => {
                if trimmed.trim_end() == "```" {
                    blocks.push(Block {
                        lang,
                        body: lines.join("\n"),
                    });
                } else {
                    lines.push(line);
                    open = Some((lang, lines));
                }
            }
        }
    }
    if let Some((lang, lines)) = open {
        blocks.push(Block {
            lang,
            body: lines.join("\n"),
        });
    }
    blocks
}

/// Returns the program in `response` according to `mode`.
pub fn extract_program(response: &str, mode: Extract) -> String {
    if mode == Extract::Raw {
        return response.to_string();
    }
    let blocks = fenced_blocks(response);
    let is_python = |lang: &str| matches!(lang.to_ascii_lowercase().as_str(), "python" | "py" | "python3");
    if let Some(block) = blocks.iter().rev().find(|b| is_python(b.lang)) {
        return block.body.clone();
    }
    if let Some(block) = blocks.iter().rev().find(|b| b.lang.is_empty()) {
        return block.body.clone();
    }
    if blocks.is_empty() {
        return response.to_string();
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_last_python_block() {
        let r = "First try:\n```python\nprint(1)\n```\nBetter:\n```python\nprint(2)\n```\nDone.";
        assert_eq!(extract_program(r, Extract::LastPythonBlock), "print(2)");
    }

    #[test]
    fn prefers_python_over_other_languages_and_accepts_py() {
        let r = "```py\nx = 1\n```\n```text\nsample\n```";
        assert_eq!(extract_program(r, Extract::LastPythonBlock), "x = 1");
    }

    #[test]
    fn falls_back_to_an_untagged_block_then_raw_code() {
        assert_eq!(extract_program("```\nprint(3)\n```", Extract::LastPythonBlock), "print(3)");
        assert_eq!(extract_program("print(4)\n", Extract::LastPythonBlock), "print(4)\n");
        assert_eq!(extract_program("```rust\nfn main(){}\n```", Extract::LastPythonBlock), "");
    }

    #[test]
    fn an_unterminated_block_runs_to_the_end() {
        assert_eq!(extract_program("```python\na = 1\nb = 2", Extract::LastPythonBlock), "a = 1\nb = 2");
    }

    #[test]
    fn raw_mode_keeps_everything() {
        let r = "```python\nprint(1)\n```";
        assert_eq!(extract_program(r, Extract::Raw), r);
    }
}
