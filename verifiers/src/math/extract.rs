//! Finding the answer inside a full model response (or a gold solution text).
//!
//! Priority, first that yields wins: `\boxed{…}` / `\fbox{…}` (nested braces; the last
//! box by default, unless a "final answer" anchor that reads as mathematics follows it),
//! GSM8K's `#### N`, an anchor phrase ("final answer is", "answer:", markdown bold
//! allowed), the last `$…$` / `\(…\)` / `\[…\]` math segment without words in it
//! (segments joined by "and" / "or" together), the whole response when it is one short
//! line without words, and (when enabled) the last bare number in the text (with a
//! decimal comma, `2,74`, when it has one). Multiple-choice golds use the letter of the
//! extracted answer, or the last letter a sentence picks (`(C)`, "option C"). A chat
//! template's token that starts another turn ends the response ([`before_next_turn`]).

use regex::Regex;
use std::borrow::Cow;
use std::sync::LazyLock;

/// Which `\boxed{}` to take when a response has several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BoxedMode {
    /// The last box (what graders such as Math-Verify and verl do).
    #[default]
    Last,
    /// The first box.
    First,
    /// Every box, joined into one comma-separated list (a model that boxes each root of
    /// an equation separately); compared as an order-free list.
    All,
}

/// How an answer was found; reported in the verdict's reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `\boxed{}` or `\fbox{}`.
    Boxed,
    /// GSM8K `#### N`.
    Hashes,
    /// "final answer is …", "answer: …".
    Anchor,
    /// A `$…$`, `\(…\)` or `\[…\]` segment.
    MathSegment,
    /// The last number in the text.
    LastNumber,
    /// The whole string: a gold answer given bare, or a short one-line response with no
    /// words in it (`\frac{1}{2}`, `x = 5`).
    Whole,
}

impl Source {
    /// A short name for reasons and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Boxed => "boxed",
            Source::Hashes => "####",
            Source::Anchor => "anchor",
            Source::MathSegment => "math segment",
            Source::LastNumber => "last number",
            Source::Whole => "whole",
        }
    }
}

/// Every `\boxed{…}` / `\fbox{…}` in order as `(start, end, contents)`: the byte range of
/// the whole command and its contents, braces balanced; a box that is never closed is
/// ignored. `\boxed 5` (no braces) takes the next word.
pub fn boxed_spans(text: &str) -> Vec<(usize, usize, &str)> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(rel) = text[from..].find(['\\']) {
        let start = from + rel;
        let rest = &text[start + 1..];
        let cmd_len = if rest.starts_with("boxed") {
            5
        } else if rest.starts_with("fbox") {
            4
        } else {
            from = start + 1;
            continue;
        };
        let mut i = start + 1 + cmd_len;
        if bytes.get(i).is_some_and(|b| b.is_ascii_alphabetic()) {
            from = i;
            continue;
        }
        while bytes.get(i) == Some(&b' ') {
            i += 1;
        }
        if bytes.get(i) == Some(&b'{') {
            let mut depth = 0usize;
            let mut end = None;
            let mut j = i;
            while j < bytes.len() {
                match bytes[j] {
                    b'\\' => j += 1,
                    b'{' => depth += 1,
                    b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(j);
                            break;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            match end {
                Some(e) => {
                    out.push((start, e + 1, &text[i + 1..e]));
                    from = e + 1;
                }
                None => break,
            }
        } else {
            let word_end = text[i..]
                .find(|c: char| c.is_whitespace() || c == '$')
                .map_or(text.len(), |k| i + k);
            if word_end > i {
                out.push((start, word_end, &text[i..word_end]));
            }
            from = word_end.max(i + 1).min(text.len());
        }
    }
    out
}

/// Contents of every `\boxed{…}` / `\fbox{…}` in order (see [`boxed_spans`]).
pub fn boxed_contents(text: &str) -> Vec<&str> {
    boxed_spans(text).into_iter().map(|(_, _, c)| c).collect()
}

/// Longest text allowed between two boxes that together give one answer
/// (`\boxed{4}, \boxed{9}`, `\boxed{a = 12} \text{ and } \boxed{b = 5}`).
const BOX_RUN_GAP: usize = 48;

/// The last run of two or more boxes that stand together (separated only by short text
/// such as `, ` or ` and `, with no blank line), joined into one comma-separated list;
/// `None` when the response's last box stands alone.
pub fn boxed_run(text: &str) -> Option<String> {
    let spans = boxed_spans(text);
    let mut first = spans.len().checked_sub(1)?;
    while first > 0 {
        let gap = &text[spans[first - 1].1..spans[first].0];
        if gap.trim().len() > BOX_RUN_GAP || gap.contains("\n\n") {
            break;
        }
        first -= 1;
    }
    if first + 1 == spans.len() {
        return None;
    }
    let parts: Vec<&str> = spans[first..].iter().map(|(_, _, c)| *c).collect();
    Some(parts.join(","))
}

static HASHES: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"####\s*([^\n]*)").unwrap());
static ANCHOR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:final\s+answer|the\s+answer|answer)[*\s]*(?:is|:|=)[*\s]*:?[*\s]*([^\n]*)")
        .unwrap()
});
static DOLLARS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?s)\$\$(.+?)\$\$|\\\[(.+?)\\\]|\\\((.+?)\\\)|\$((?:[^$\\]|\\.)+?)\$").unwrap()
});
static NUMBER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?(?:/\d+)?|-?\.\d+").unwrap()
});
static WORD2: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?:^|[^\\a-zA-Z])([a-zA-Z]{2,})").unwrap());
static WORD3: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?:^|[^\\a-zA-Z])[a-zA-Z]{4,}").unwrap());

/// An anchor inside an anchor's text ("Final Answer: The final answer is $X$").
static NESTED_ANCHOR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^(?:so|thus|therefore|hence)?,?\s*(?:the\s+)?(?:final\s+)?answer[*\s]*(?:is|:|=)[*\s]*:?[*\s]*")
        .unwrap()
});
/// A sentence naming what it gives: "the largest $n$ is 34", "the sum equals 9".
static SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^([a-z][^\n]*?)\s(?:is|are|equals|was|will\s+be)\s+(.+)$").unwrap()
});
/// `\begin{…}` / `\end{…}` with an array's column spec (`\begin{array}{cc}`): names, not
/// words.
pub(super) static ENVIRONMENTS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\\(?:begin|end)\s*\{[a-zA-Z*]*\}(?:\s*\{[lcr| ]*\})?").unwrap());
/// Chat-template tokens that end a model's turn (`<|im_end|>`, `<|im_start|>`, `</s>`,
/// `<end_of_turn>`): what follows is another turn, not the response.
static CHAT_TOKEN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"<\|[A-Za-z0-9_]{1,40}\|>|</s>|<(?:end|start)_of_turn>").unwrap());
/// What may stand between math segments that answer together: `, `, ` and `, ` or `.
static SEGMENT_JOIN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\s*(?:,\s*)?(?:(?i:and|or)\s*)?$").unwrap());
/// "final answer" in an anchor, which outranks boxes written before it.
static FINAL_ANCHOR: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?i)final\s+answer").unwrap());
/// Text commands whose words are not prose (`\text{ cm}`, `\text{Odd}`).
static TEXT_GROUP: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\\(?:text|textbf|textit|textrm|mbox|mathrm|mathbf|operatorname)\s*\{[^{}]*\}")
        .unwrap()
});

/// The text up to the first full stop that is neither a decimal point nor inside a
/// `$…$` segment.
fn first_sentence(s: &str) -> &str {
    let b = s.as_bytes();
    let mut in_math = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'$' => in_math = !in_math,
            b'.' if !in_math && !b.get(i + 1).is_some_and(|d| d.is_ascii_digit()) => {
                return &s[..i];
            }
            _ => {}
        }
        i += 1;
    }
    s
}

/// Runs of `$…$`, `\(…\)` or `\[…\]` segments of `s` that read as formulas, in order;
/// segments joined only by a comma, "and" or "or" (`$x = 3$ or $x = 5$`) form one run,
/// which gives one answer: their contents joined by commas.
fn formula_runs(s: &str) -> Vec<Cow<'_, str>> {
    let mut runs: Vec<Cow<'_, str>> = Vec::new();
    let mut last_end = None;
    for c in DOLLARS.captures_iter(s) {
        let (Some(whole), Some(inner)) = (c.get(0), (1..=4).find_map(|k| c.get(k))) else {
            continue;
        };
        let inner = inner.as_str().trim();
        if inner.is_empty() || !is_formula(inner) {
            last_end = None;
            continue;
        }
        match (last_end, runs.last_mut()) {
            (Some(end), Some(run)) if SEGMENT_JOIN.is_match(&s[end..whole.start()]) => {
                let joined = run.to_mut();
                joined.push(',');
                joined.push_str(inner);
            }
            _ => runs.push(Cow::Borrowed(inner)),
        }
        last_end = Some(whole.end());
    }
    runs
}

/// Cuts an anchor's text down to the answer. A nested anchor ("The final answer is"
/// after "Final Answer:") is skipped and the text is cut at the end of its first
/// sentence ("I hope it is correct" goes). A sentence that names what it gives ("The
/// largest $n$ is 34") keeps what follows its verb. Then a math segment is taken whole;
/// otherwise, when words follow the answer ("12 because …", "\\frac34 of the pie"),
/// the part before the first word, and in a sentence that names one number, that number.
fn anchor_clause(s: &str) -> Cow<'_, str> {
    let mut s = s.trim().trim_matches('*').trim();
    for _ in 0..4 {
        match NESTED_ANCHOR.find(s) {
            Some(m) if m.end() > 0 && m.end() < s.len() => s = s[m.end()..].trim(),
            _ => break,
        }
    }
    let mut s = first_sentence(s).trim();
    if let Some(c) = SUBJECT.captures(s) {
        let rest = c.get(2).map_or("", |m| m.as_str());
        if rest.contains(|ch: char| ch.is_ascii_digit() || ch == '$' || ch == '\\') {
            s = rest.trim();
        }
    }
    if let Some(f) = formula_runs(s).into_iter().next() {
        return f;
    }
    let first_word = WORD2
        .captures_iter(s)
        .filter_map(|c| c.get(1))
        .find(|w| !matches!(w.as_str().to_ascii_lowercase().as_str(), "and" | "or"));
    if let Some(w) = first_word {
        let prefix = s[..w.start()].trim();
        if prefix.contains(|c: char| c.is_ascii_digit() || c == '\\') {
            return Cow::Borrowed(prefix);
        }
        // A sentence that names one number ("Jane started growing Sphere 3 hours ago").
        if prefix.is_empty()
            && let Some(n) = single_number(s)
        {
            return Cow::Borrowed(n);
        }
    }
    Cow::Borrowed(s.trim_end_matches('*').trim())
}

/// The one number standing alone in `s`, when there is exactly one.
fn single_number(s: &str) -> Option<&str> {
    let mut found = NUMBER
        .find_iter(s)
        .filter(|m| stands_alone(s, m.start(), m.end()));
    let one = found.next()?;
    found.next().is_none().then_some(one.as_str())
}

/// Whether a `$…$` segment reads as a formula rather than prose or currency
/// (`$5 and $`): no words of two or more letters outside `\text{…}`-like groups and
/// environment names (`\begin{array}{cc}`).
fn is_formula(s: &str) -> bool {
    let s = TEXT_GROUP.replace_all(s, " ");
    let s = ENVIRONMENTS.replace_all(&s, " ");
    !WORD2.is_match(&s)
}

/// Whether a number found in prose stands on its own: not part of a word or code such
/// as `QX7ZT`, `H2O` or `x2` (a letter before it, or capital letters after it).
fn stands_alone(text: &str, start: usize, end: usize) -> bool {
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    !before.is_some_and(|c| c.is_alphabetic() || c == '_')
        && !after.is_some_and(|c| c.is_uppercase() || c.is_ascii_digit() || c == '_')
}

/// The response up to the first chat-template token that follows some text
/// (`… is 2/3. <|im_start|>user …`): a later turn is not part of the answer. Tokens
/// before any text (`<|im_start|>assistant`) are kept.
pub fn before_next_turn(response: &str) -> &str {
    if !response.contains('<') {
        return response;
    }
    let mut text_from = 0;
    for m in CHAT_TOKEN.find_iter(response) {
        if response[text_from..m.start()].trim().is_empty() {
            text_from = m.end();
            continue;
        }
        return &response[..m.start()];
    }
    response
}

/// The last "final answer" anchor that comes after the response's last box, when its
/// clause reads as mathematics (`\boxed{200} … Final Answer: The final answer is
/// $10,455$`): the model's closing statement outranks a box worked out on the way.
fn final_anchor_after(response: &str, after: usize) -> Option<String> {
    let c = ANCHOR.captures_iter(&response[after..]).last()?;
    if !FINAL_ANCHOR.is_match(c.get(0)?.as_str()) {
        return None;
    }
    let clause = anchor_clause(&c[1]);
    let t = clause.trim();
    t.contains(|ch: char| ch.is_ascii_digit() || ch == '\\')
        .then(|| t.to_string())
}

/// The answer text of a response, with where it came from; `None` when nothing in the
/// response looks like an answer.
pub fn extract_answer(
    response: &str,
    boxed: BoxedMode,
    last_number: bool,
) -> Option<(String, Source)> {
    let spans = boxed_spans(response);
    if let Some(&(_, last_end, last)) = spans.last() {
        let s = match boxed {
            BoxedMode::Last => {
                if let Some(a) = final_anchor_after(response, last_end) {
                    return Some((a, Source::Anchor));
                }
                last.to_string()
            }
            BoxedMode::First => spans[0].2.to_string(),
            BoxedMode::All => spans.iter().map(|b| b.2).collect::<Vec<_>>().join(","),
        };
        return Some((s, Source::Boxed));
    }
    if let Some(c) = HASHES.captures_iter(response).last() {
        let t = c[1].trim();
        if !t.is_empty() {
            return Some((t.to_string(), Source::Hashes));
        }
    }
    if let Some(c) = ANCHOR.captures_iter(response).last() {
        let clause = anchor_clause(&c[1]);
        let t = clause.trim();
        if !t.is_empty() {
            return Some((t.to_string(), Source::Anchor));
        }
    }
    if let Some(s) = formula_runs(response).pop() {
        return Some((s.into_owned(), Source::MathSegment));
    }
    let whole = response.trim();
    if !whole.is_empty() && whole.len() <= 200 && !whole.contains('\n') && !WORD3.is_match(whole) {
        return Some((whole.to_string(), Source::Whole));
    }
    if last_number
        && let Some(m) = NUMBER
            .find_iter(response)
            .filter(|m| stands_alone(response, m.start(), m.end()))
            .last()
    {
        let start = decimal_comma_start(response, m.start()).unwrap_or(m.start());
        return Some((response[start..m.end()].to_string(), Source::LastNumber));
    }
    None
}

/// Where a number written with a decimal comma starts (`2,74`, `-0,5`) when the digits
/// at `frac_start` are its fractional part: an integer and a comma come just before,
/// with no other list item before them, and [`super::normalize::decimal_comma`] reads it
/// as one.
fn decimal_comma_start(text: &str, frac_start: usize) -> Option<usize> {
    let int_end = text[..frac_start].strip_suffix(',')?.len();
    let int_start = text[..int_end]
        .trim_end_matches(|c: char| c.is_ascii_digit())
        .len();
    let before = &text[..int_start];
    if int_start == int_end || before.ends_with([',', '.']) {
        return None;
    }
    let start = before.strip_suffix('-').map_or(int_start, str::len);
    let frac_end = frac_start
        + text[frac_start..]
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len() - frac_start);
    super::normalize::decimal_comma(&text[start..frac_end]).map(|_| start)
}

/// The answer inside a gold string: the last box of a solution (boxes side by side,
/// `\boxed{1}\boxed{2}`, together as a list), the `#### N` of a GSM8K solution, or the
/// whole string (MATH's raw LaTeX, AMC's `27.0`).
pub fn extract_gold(gold: &str) -> (String, Source) {
    if let Some(run) = boxed_run(gold) {
        return (run, Source::Boxed);
    }
    let boxes = boxed_contents(gold);
    if let Some(last) = boxes.last() {
        return (last.to_string(), Source::Boxed);
    }
    if let Some(c) = HASHES.captures_iter(gold).last() {
        return (c[1].trim().to_string(), Source::Hashes);
    }
    (gold.trim().to_string(), Source::Whole)
}

static CHOICE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^\s*(?:\\(?:text|textbf|mathrm|mathbf)\s*\{\s*)?\(?\s*([A-E])\s*\)?\s*\}?(?:\s|[.,;:)}]|$)",
    )
    .unwrap()
});
static CHOICE_GOLD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*(?:\\(?:text|textbf|mathrm|mathbf)\s*\{\s*)?\(?\s*([A-E])\s*\)?\s*\}?\s*$")
        .unwrap()
});
/// A letter chosen in a sentence: `(C)`, "the answer is **C**", "option $B$", "D is
/// correct", "I choose (A)".
static CHOICE_IN_TEXT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"\(([A-E])\)",
        r"|\b(?:[Aa]nswer|[Oo]ption|[Cc]hoice)\s*(?:is\s*)?:?\s*(?:\*\*|\$|\\\(|\\text(?:bf)?\s*\{|\\mathrm\s*\{|\()*\s*([A-E])\b",
        r"|\b([A-E])\s+is\s+(?:the\s+)?(?:correct|right|best)\b",
        r"|\b(?:[Cc]hoose|[Pp]ick|[Ss]elect)\s+(?:[Oo]ption\s+)?\(?([A-E])\b",
    ))
    .unwrap()
});

static CHOICE_LEADING: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^\s*(?:\*\*|__)?\s*(?:\$\s*|\\\(\s*)?(?:\\(?:text|textbf|mathrm|mathbf)\s*\{\s*)?(?:\(([A-E])\)|([A-E])\s*(?:\}\s*)?(?:\$|\\\)|\*\*|__|[.:)]|\s*$))",
    )
    .unwrap()
});

/// The letter a response starts with (`C. Because …`, `(C) since …`, `**C**`, `$C$`):
/// a multiple-choice answer given first and explained after.
pub fn leading_choice(response: &str) -> Option<char> {
    CHOICE_LEADING
        .captures(response)
        .and_then(|c| c.get(1).or(c.get(2)))
        .and_then(|m| m.as_str().chars().next())
}

/// The letter of a multiple-choice gold answer (`B`, `(B)`, `\text{(B)}`).
pub fn gold_choice(gold: &str) -> Option<char> {
    CHOICE_GOLD.captures(gold).and_then(|c| c[1].chars().next())
}

/// The letter a candidate answer starts with (`C`, `(C) 12`, `\text{(C)}`).
pub fn answer_choice(answer: &str) -> Option<char> {
    CHOICE.captures(answer).and_then(|c| c[1].chars().next())
}

/// The last `(C)`-style letter anywhere in a response: the fallback for multiple-choice
/// golds when the response has no box or anchor.
pub fn last_choice_in_text(response: &str) -> Option<char> {
    CHOICE_IN_TEXT
        .captures_iter(response)
        .last()
        .and_then(|c| c.iter().skip(1).flatten().next())
        .and_then(|m| m.as_str().chars().next())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_boxes() {
        let r = r"so \boxed{\frac{1}{2}} then \fbox{x^{2}} and \boxed 7$";
        assert_eq!(boxed_contents(r), vec![r"\frac{1}{2}", "x^{2}", "7"]);
        assert_eq!(boxed_contents(r"\boxed{unclosed"), Vec::<&str>::new());
    }

    #[test]
    fn priorities() {
        let ex = |s| extract_answer(s, BoxedMode::Last, true).map(|(a, s)| (a, s.as_str()));
        assert_eq!(ex("x #### 1,000\nthen 7"), Some(("1,000".into(), "####")));
        assert_eq!(
            ex("The final answer is $\\frac12$. I hope"),
            Some(("\\frac12".into(), "anchor"))
        );
        assert_eq!(ex("Answer: 3.5."), Some(("3.5".into(), "anchor")));
        assert_eq!(
            ex("The answer is $\\$36$."),
            Some(("\\$36".into(), "anchor"))
        );
        assert_eq!(
            ex("The answer is $18 per hour."),
            Some(("$18".into(), "anchor"))
        );
        assert_eq!(ex("**Final Answer:** 1/2"), Some(("1/2".into(), "anchor")));
        assert_eq!(
            ex("The answer is 12 because 3*4"),
            Some(("12".into(), "anchor"))
        );
        assert_eq!(
            ex("The answer is \\frac34 of the pie."),
            Some(("\\frac34".into(), "anchor"))
        );
        assert_eq!(
            ex("The answer is 3 or 5."),
            Some(("3 or 5".into(), "anchor"))
        );
        assert_eq!(
            ex("The answer is Evelyn."),
            Some(("Evelyn".into(), "anchor"))
        );
        assert_eq!(
            ex("we get $x = 4$ so"),
            Some(("x = 4".into(), "math segment"))
        );
        assert_eq!(
            ex("costs 12 then 15 apples"),
            Some(("15".into(), "last number"))
        );
        assert_eq!(extract_answer("no numbers", BoxedMode::Last, true), None);
    }

    #[test]
    fn box_runs() {
        assert_eq!(
            boxed_run(r"so \boxed{4}, \boxed{9}."),
            Some("4,9".to_string())
        );
        assert_eq!(
            boxed_run(r"\boxed{a = 12} \text{ and } \boxed{b = 5}"),
            Some("a = 12,b = 5".to_string())
        );
        assert_eq!(boxed_run("\\boxed{1}\n\nso \\boxed{2}"), None);
        assert_eq!(boxed_run(r"only \boxed{2}"), None);
        assert_eq!(boxed_run("no box"), None);
    }

    #[test]
    fn anchors_followed_by_sentences() {
        let ex = |s| extract_answer(s, BoxedMode::Last, true).map(|(a, _)| a);
        assert_eq!(
            ex("Final Answer: The final answer is $x^2$. I hope it is correct."),
            Some("x^2".into())
        );
        assert_eq!(
            ex("Final Answer: The largest $n$ is 34."),
            Some("34".into())
        );
        assert_eq!(
            ex(r"The answer is $\text{Odd}$."),
            Some(r"\text{Odd}".into())
        );
        assert_eq!(
            ex("Final Answer: -7. I hope it is correct."),
            Some("-7".into())
        );
    }

    #[test]
    fn turns_closing_anchors_and_joined_segments() {
        assert_eq!(
            before_next_turn("is 2/3. <|im_start|>user\n1/2"),
            "is 2/3. "
        );
        assert_eq!(
            before_next_turn("<|im_start|>assistant\n5<|im_end|>"),
            "<|im_start|>assistant\n5"
        );
        assert_eq!(before_next_turn("x < 2 and y > 1"), "x < 2 and y > 1");
        let ex = |s| extract_answer(s, BoxedMode::Last, true).map(|(a, _)| a);
        let closing = r"\boxed{200} then \boxed{255}. Final Answer: The final answer is $10,455$.";
        assert_eq!(ex(closing), Some("10,455".into()));
        assert_eq!(ex(r"Final Answer: \boxed{7}"), Some("7".into()));
        assert_eq!(
            ex(r"\boxed{7}. The final answer is correct."),
            Some("7".into())
        );
        assert_eq!(ex("so $x = 3$ or $x = 5$."), Some("x = 3,x = 5".into()));
        assert_eq!(ex("so $x = 3$. Then $y = 5$."), Some("y = 5".into()));
        assert_eq!(ex("Le prix est de 2,74 euros."), Some("2,74".into()));
        assert_eq!(ex("The roots are 1,2,74."), Some("74".into()));
        assert_eq!(
            ex("Final Answer: Tom walked 4 miles. I hope it is correct."),
            Some("4".into())
        );
    }

    #[test]
    fn numbers_inside_words_are_not_answers() {
        let ex = |s| extract_answer(s, BoxedMode::Last, true).map(|(a, _)| a);
        assert_eq!(ex("The code is QX7ZT."), None);
        assert_eq!(ex("Water is H2O, so 2 atoms."), Some("2".into()));
        assert_eq!(ex("It costs 12cm of tape."), Some("12".into()));
    }

    #[test]
    fn choices() {
        assert_eq!(gold_choice(r"\text{(C)}"), Some('C'));
        assert_eq!(gold_choice("B"), Some('B'));
        assert_eq!(gold_choice("Bob"), None);
        assert_eq!(answer_choice("(D) 12"), Some('D'));
        assert_eq!(answer_choice(r"\textbf{(E)}"), Some('E'));
        assert_eq!(last_choice_in_text("I pick (A), no wait, (B)."), Some('B'));
        assert_eq!(
            last_choice_in_text("the correct option is **B** here"),
            Some('B')
        );
        assert_eq!(last_choice_in_text("So D is correct."), Some('D'));
        assert_eq!(last_choice_in_text("I choose A."), Some('A'));
        assert_eq!(answer_choice("B, since A fails"), Some('B'));
        assert_eq!(leading_choice("C. Because it grows."), Some('C'));
        assert_eq!(leading_choice("**D**\n\nsince"), Some('D'));
        assert_eq!(leading_choice("$B$ is right"), Some('B'));
        assert_eq!(leading_choice("(E) as shown"), Some('E'));
        assert_eq!(leading_choice("A function f grows."), None);
    }
}
