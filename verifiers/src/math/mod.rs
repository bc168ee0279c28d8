//! Math-answer verifier: is the final answer of a model response equal to a gold answer?
//!
//! The pipeline is extraction ([`extract`]), string normalisation ([`normalize`]),
//! parsing into a small expression tree ([`parse`]) and mathematical comparison
//! ([`equiv`], on exact values from [`value`]; matrix expressions reduced by
//! [`matrix`]). Every stage is bounded by construction (caps on answer length, tokens,
//! nesting, exponents, factorials, term counts, matrix sizes), so one item takes a
//! bounded amount of work without timeouts or signals, never panics on any input, and
//! can be called from any thread. [`verify_batch`] scores many items on the
//! rayon pool; [`jsonl::verify_jsonl`] backs `cove verify math`.
//!
//! ```
//! use cove_verifiers::math::{MathOptions, verify};
//! let v = verify(r"\frac{1}{2}", r"So the answer is $\boxed{0.5}$.", &MathOptions::default());
//! assert!(v.correct);
//! ```

pub mod equiv;
pub mod extract;
pub mod jsonl;
mod lex;
pub mod matrix;
pub mod normalize;
pub mod parse;
mod relation;
mod tree;
pub mod value;

use crate::reward::{Reward, Score};
use extract::{BoxedMode, Source};
use rayon::prelude::*;
use regex::Regex;
use std::sync::LazyLock;

/// How answers are found and compared. The defaults suit MATH / GSM8K-style RL rewards.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct MathOptions {
    /// Which `\boxed{}` to use when a response has several.
    pub boxed: BoxedMode,
    /// Fall back to the last number in the response when nothing else marks an answer.
    pub last_number_fallback: bool,
    /// Relative tolerance for answers written as decimals (`|a-b| ≤ tol·max(|a|,|b|)`).
    pub rel_tol: f64,
    /// Whether `50\%` also matches `0.5` (it always matches `50`).
    pub percent_as_fraction: bool,
    /// Points at which expressions with variables are evaluated (1 to 11).
    pub eval_points: usize,
    /// Decimal places at which an answer written as a decimal also matches when it agrees
    /// with the gold after both are rounded (`0.333` matches `\frac{1}{3}` at 3, not at
    /// 4); at most [`value::MAX_DECIMAL_PLACES`]. `None` (the default): off, decimals
    /// compare with `rel_tol` only.
    pub decimal_places: Option<u32>,
}

impl Default for MathOptions {
    fn default() -> Self {
        MathOptions {
            boxed: BoxedMode::Last,
            last_number_fallback: true,
            rel_tol: 1e-6,
            percent_as_fraction: true,
            eval_points: 4,
            decimal_places: None,
        }
    }
}

/// The outcome of verifying one response.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Verdict {
    /// Whether the response's answer equals the gold answer.
    pub correct: bool,
    /// The answer text found in the response, before normalisation.
    pub extracted: Option<String>,
    /// The gold answer after extraction and normalisation.
    pub gold_normalized: String,
    /// Why: how the answer was found and how it was compared.
    pub reason: String,
}

static WORDS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?:^|[^\\a-zA-Z])[a-zA-Z]{3,}").unwrap());

/// A gold that names its value with a word or points: `Area = 24`, `Total cost = 12`
/// (from `\text{Area} = 24`), `\angle ABC = 40`: one `=`, no digits before it.
static WORD_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[^=0-9]*[A-Za-z][^=0-9]*=\s*([^=]+)$").unwrap());

/// Whether a normalised answer is words (`Evelyn`, `east`) rather than mathematics: it
/// has a run of three or more letters that is not a command or an environment name.
fn is_text(normalized: &str) -> bool {
    WORDS.is_match(&extract::ENVIRONMENTS.replace_all(normalized, " "))
}

/// The value of a gold that names it in words (`Area = 24` gives `24`), when the value
/// is mathematics.
fn word_named_value(gold_norm: &str) -> Option<&str> {
    let value = WORD_NAME.captures(gold_norm)?.get(1)?.as_str().trim();
    (!is_text(value) && !value.is_empty()).then_some(value)
}

/// Whether a parsed answer is one number (`2.74`, `-3`): what a decimal comma on the
/// other side (`2,74`) is compared with.
fn is_number(n: &parse::Node) -> bool {
    match n {
        parse::Node::Num { .. } => true,
        parse::Node::Neg(x) => matches!(**x, parse::Node::Num { .. }),
        _ => false,
    }
}

/// `normalized` read with a decimal comma (see [`normalize::decimal_comma`]), when the
/// other side is one number.
fn with_decimal_comma(normalized: &str, other: &parse::Node) -> Option<parse::Node> {
    if !is_number(other) {
        return None;
    }
    parse::parse(&normalize::decimal_comma(normalized)?).ok()
}

/// Compares an already extracted answer with an already extracted gold answer.
/// Returns whether they are equal and how that was decided.
fn compare(answer: &str, gold_norm: &str, opts: &MathOptions) -> (bool, &'static str) {
    if answer.len() > normalize::MAX_ANSWER_CHARS {
        return (false, "answer too long");
    }
    let ans_norm = normalize::normalize(answer);
    if ans_norm == gold_norm {
        return (true, "identical after normalisation");
    }
    if ans_norm.is_empty() {
        return (false, "empty answer");
    }
    let too_long = ans_norm.len() > normalize::MAX_ANSWER_CHARS
        || gold_norm.len() > normalize::MAX_ANSWER_CHARS;
    let gold_norm = match word_named_value(gold_norm) {
        Some(value) if !too_long && is_text(gold_norm) => value,
        _ => gold_norm,
    };
    if too_long || is_text(gold_norm) {
        let same = normalize::text_key(&ans_norm) == normalize::text_key(gold_norm);
        return (same, if same { "text match" } else { "text differs" });
    }
    let gold_tree = match parse::parse(gold_norm) {
        Ok(t) => t,
        Err(_) => {
            let same = normalize::text_key(&ans_norm) == normalize::text_key(gold_norm);
            return (
                same,
                if same {
                    "gold not parseable; text match"
                } else {
                    "gold not parseable; text differs"
                },
            );
        }
    };
    let ans_tree = match parse::parse(&ans_norm) {
        Ok(t) => t,
        Err(_) => return (false, "answer not parseable"),
    };
    let c = equiv::CompareOptions {
        rel_tol: opts.rel_tol,
        percent_as_fraction: opts.percent_as_fraction,
        points: opts.eval_points,
        decimal_places: opts.decimal_places,
    };
    let equal = |a: &parse::Node, g: &parse::Node| {
        equiv::equal(a, g, &c).then(|| parse::has_decimal(a) || parse::has_decimal(g))
    };
    // A decimal comma (`2,74`) on one side against one number on the other.
    let tolerant = equal(&ans_tree, &gold_tree)
        .or_else(|| with_decimal_comma(&ans_norm, &gold_tree).and_then(|a| equal(&a, &gold_tree)))
        .or_else(|| with_decimal_comma(gold_norm, &ans_tree).and_then(|g| equal(&ans_tree, &g)));
    if let Some(tol) = tolerant {
        (
            true,
            if tol {
                "equivalent within relative tolerance"
            } else {
                "equivalent"
            },
        )
    } else {
        (false, "not equivalent")
    }
}

/// Verifies one response against a gold answer.
///
/// `gold` may be a bare answer in LaTeX (MATH's `answer`), a full solution with
/// `\boxed{}` or `#### N`, or a number such as `27.0`. `response` is a full model output;
/// it ends at a chat-template token that starts another turn (`<|im_start|>`), and LaTeX
/// escaped twice (`\\frac`) is read once escaped, in the gold as well.
pub fn verify(gold: &str, response: &str, opts: &MathOptions) -> Verdict {
    let gold = normalize::unescape_doubled(gold);
    let response = normalize::unescape_doubled(extract::before_next_turn(response));
    let response = response.as_ref();
    let (gold_ans, _) = extract::extract_gold(&gold);
    let gold_norm = if gold_ans.len() > normalize::MAX_ANSWER_CHARS {
        gold_ans.clone()
    } else {
        normalize::normalize(&gold_ans)
    };
    if let Some(letter) =
        extract::gold_choice(&gold_ans).or_else(|| extract::gold_choice(&gold_norm))
    {
        return verify_choice(letter, response, gold_norm, opts);
    }
    let Some((answer, source)) =
        extract::extract_answer(response, opts.boxed, opts.last_number_fallback)
    else {
        return Verdict {
            correct: false,
            extracted: None,
            gold_normalized: gold_norm,
            reason: "no answer found in response".into(),
        };
    };
    let (correct, how) = compare(&answer, &gold_norm, opts);
    if !correct
        && source == Source::Boxed
        && opts.boxed == BoxedMode::Last
        && let Some(run) = extract::boxed_run(response)
    {
        // Several boxes side by side (`\boxed{4}, \boxed{9}`) answer together.
        let (together, how) = compare(&run, &gold_norm, opts);
        if together {
            return Verdict {
                correct: true,
                reason: format!("{how} (boxes together)"),
                extracted: Some(run),
                gold_normalized: gold_norm,
            };
        }
    }
    Verdict {
        correct,
        reason: format!("{} ({})", how, source.as_str()),
        extracted: Some(answer),
        gold_normalized: gold_norm,
    }
}

fn verify_choice(letter: char, response: &str, gold_norm: String, opts: &MathOptions) -> Verdict {
    let found = extract::extract_answer(response, opts.boxed, false);
    let picked = match &found {
        Some((a, Source::Boxed | Source::Anchor | Source::Hashes | Source::Whole)) => {
            extract::answer_choice(a).or_else(|| extract::answer_choice(&normalize::normalize(a)))
        }
        // A math segment counts only when it is a letter and nothing else (`$C$`).
        Some((a, Source::MathSegment)) => {
            extract::gold_choice(a).or_else(|| extract::gold_choice(&normalize::normalize(a)))
        }
        _ => None,
    }
    .or_else(|| extract::leading_choice(response))
    .or_else(|| extract::last_choice_in_text(response));
    let correct = picked == Some(letter);
    Verdict {
        correct,
        extracted: picked.map(|c| c.to_string()).or(found.map(|f| f.0)),
        gold_normalized: gold_norm,
        reason: match picked {
            Some(p) => format!("multiple choice: picked {p}, gold {letter}"),
            None => format!("multiple choice: no letter found, gold {letter}"),
        },
    }
}

/// Verifies `(gold, response)` pairs in parallel on the rayon pool, in input order.
pub fn verify_batch<G, R>(items: &[(G, R)], opts: &MathOptions) -> Vec<Verdict>
where
    G: AsRef<str> + Sync,
    R: AsRef<str> + Sync,
{
    items
        .par_iter()
        .map(|(g, r)| verify(g.as_ref(), r.as_ref(), opts))
        .collect()
}

/// The math-answer reward: 1.0 for a correct final answer, 0.0 otherwise. The task is
/// the gold answer string (any shape [`verify`] accepts).
#[derive(Debug, Clone, Default)]
pub struct MathVerifier {
    /// Extraction and comparison settings.
    pub options: MathOptions,
}

impl MathVerifier {
    /// A verifier with the given options.
    pub fn new(options: MathOptions) -> Self {
        MathVerifier { options }
    }
}

impl Reward for MathVerifier {
    type Task = String;

    fn name(&self) -> &str {
        "math"
    }

    fn score(&self, task: &String, response: &str) -> Score {
        let v = verify(task, response, &self.options);
        Score {
            reward: if v.correct { 1.0 } else { 0.0 },
            correct: v.correct,
            details: format!(
                "{}; extracted {:?}; gold {:?}",
                v.reason,
                v.extracted.as_deref().unwrap_or(""),
                v.gold_normalized
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_to_end() {
        let o = MathOptions::default();
        assert!(verify("\\text{(C)}", "The answer is \\boxed{C}.", &o).correct);
        assert!(!verify("\\text{(C)}", "The answer is \\boxed{B}.", &o).correct);
        assert!(verify("1000", "#### 1,000\nthen 7 more", &o).correct);
        assert!(verify("\\text{Evelyn}", "\\boxed{\\text{evelyn}}", &o).correct);
        assert!(!verify("5", "I cannot say.", &o).correct);
        let r = MathVerifier::default().score(&"27.0".to_string(), "so \\boxed{27}");
        assert_eq!(r.reward, 1.0);
    }

    #[test]
    fn boxed_modes() {
        let r = "roots: \\boxed{2} and \\boxed{1}";
        let with = |boxed| MathOptions {
            boxed,
            ..MathOptions::default()
        };
        assert!(verify("1", r, &with(BoxedMode::Last)).correct);
        assert!(verify("2", r, &with(BoxedMode::First)).correct);
        assert!(verify("1, 2", r, &with(BoxedMode::All)).correct);
        assert!(!verify("1, 2", r, &with(BoxedMode::First)).correct);
        // Boxes side by side answer together against a gold that lists them...
        assert!(verify("1, 2", r, &with(BoxedMode::Last)).correct);
        // ...but not boxes paragraphs apart, nor a run with an extra answer.
        let apart = "first \\boxed{2}\n\nthen \\boxed{1}";
        assert!(!verify("1, 2", apart, &with(BoxedMode::Last)).correct);
        assert!(
            !verify(
                "1, 2",
                "\\boxed{1}, \\boxed{2}, \\boxed{3}",
                &MathOptions::default()
            )
            .correct
        );
    }

    #[test]
    fn shapes_real_models_write() {
        let o = MathOptions::default();
        let minerva = "Final Answer: The final answer is $\\frac12$. I hope it is correct.";
        assert!(verify("0.5", minerva, &o).correct);
        assert!(verify("34", "Final Answer: The largest $n$ is 34.", &o).correct);
        assert!(!verify("34", "Final Answer: The largest $n$ is 35.", &o).correct);
        assert!(verify("(4,1)", "\\boxed{(a,b)=(4,1)}", &o).correct);
        assert!(verify("9", "\\boxed{y = 2+3+4 = 9}", &o).correct);
        assert!(verify("\\frac{2}{7}", "\\boxed{y = 2/7 \\approx 0.29}", &o).correct);
        assert!(!verify("0.29", "\\boxed{y = 2/7 \\approx 0.29}", &o).correct);
        assert!(verify("C", "C. Because only C is increasing.", &o).correct);
        assert!(!verify("7", "The code is QX7ZT.", &o).correct);
    }

    #[test]
    fn last_number_fallback_is_switchable() {
        let r = "so she has 15 apples";
        assert!(verify("15", r, &MathOptions::default()).correct);
        let off = MathOptions {
            last_number_fallback: false,
            ..MathOptions::default()
        };
        assert!(!verify("15", r, &off).correct);
    }

    #[test]
    fn percent_switch() {
        let off = MathOptions {
            percent_as_fraction: false,
            ..MathOptions::default()
        };
        assert!(verify("50\\%", "\\boxed{0.5}", &MathOptions::default()).correct);
        assert!(!verify("50\\%", "\\boxed{0.5}", &off).correct);
        assert!(verify("50\\%", "\\boxed{50}", &off).correct);
    }

    #[test]
    fn batch_keeps_order() {
        let items = vec![
            ("1", "\\boxed{1}"),
            ("2", "\\boxed{3}"),
            ("3", "\\boxed{3}"),
        ];
        let got: Vec<bool> = verify_batch(&items, &MathOptions::default())
            .iter()
            .map(|v| v.correct)
            .collect();
        assert_eq!(got, vec![true, false, true]);
    }
}
