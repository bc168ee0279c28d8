//! String-level clean-up of an extracted answer before parsing.
//!
//! Removes what carries no mathematical content (math delimiters, `\left`/`\right`,
//! LaTeX spacing, `\$`, degree marks, units and words in `\text{…}`, trailing
//! punctuation), folds spellings together (`\dfrac` → `\frac`, unicode `−` → `-`,
//! `≤` → `\le`), and removes thousands separators (`1,000`, `1\,000`, `1{,}000`,
//! `10,\!080`) without touching the commas of tuples such as `(1,2)`.

use regex::Regex;
use std::borrow::Cow;
use std::sync::LazyLock;

/// Longest answer the verifier parses; longer ones are compared as text only, which
/// bounds the work per item.
pub const MAX_ANSWER_CHARS: usize = 2000;

static UNIT_WORDS: &str = "cm|centimeters?|centimetres?|mm|millimeters?|km|kilometers?|kilometres?|m|meters?|metres?|in|inch|inches|ft|foot|feet|yd|yards?|mi|miles?|units?|sq|square|cubic|degrees?|deg|radians?|rad|dollars?|cents?|euros?|hours?|hrs?|minutes?|mins?|seconds?|secs?|s|days?|weeks?|months?|years?|pounds?|lbs?|ounces?|oz|kg|g|grams?|kilograms?|tons?|tonnes?|liters?|litres?|l|ml|milliliters?|millilitres?|gallons?|quarts?|pints?|cups?|acres?|hectares?|mph|kph|km/h|m/s|people|persons?|students|children|apples|marbles|books|cookies|pages|points?|ways|times|steps|games|boxes|coins|cars|kilometers";

static TEXT_CMD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\\(?:text|textbf|textit|textrm|texttt|mbox|mathrm|mathbf|mathit|mathsf|operatorname|textnormal|hbox)\s*\{([^{}]*)\}").unwrap()
});
static UNIT_ONLY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r"^\s*(?:(?:{UNIT_WORDS})\.?\s*)+(?:\^\{{?[23]\}}?)?\s*$"
    ))
    .unwrap()
});
/// Units that are also common variable names; stripped only after a space (`5 m`,
/// not `5m`).
static SHORT_UNITS: &[&str] = &["m", "s", "g", "l", "in", "mi"];
static TRAILING_UNIT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r"(\d|\}}|\))(\s*)((?:{UNIT_WORDS})\b)\.?\s*(?:(?:{UNIT_WORDS})\b\.?\s*)*(?:\^\{{?[23]\}}?)?\s*$"
    ))
    .unwrap()
});
static THOUSANDS_LATEX: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(\d)(?:,\\!\s*|\s*\{\s*,\s*\}\s*|\\,|\\ |,\\,)(\d{3})").unwrap());
/// `1,000` and `12,345.5` (a first group of `0` is not a thousands group: `0,111` is a
/// decimal comma).
static THOUSANDS_PLAIN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[-+]?[1-9]\d{0,2}(,\d{3})+(\.\d+)?$").unwrap());
static SPACING: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\\[!,;: ]|\\q?quad\b|\\(?:displaystyle|textstyle|left|right|bigl|bigr|Bigl|Bigr|biggl|biggr|big|Big|bigg|Bigg)\b\.?|~").unwrap()
});
static DEGREES: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\^\s*\{?\s*\\circ\s*\}?|\\circ\b|\\degree\b|°").unwrap());
static UNIT_EXPONENT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\s*\^\s*(?:\{[^{}]*\}|[0-9])").unwrap());
static PERCENT_WORD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\s*\b(?:per\s?cent(?:age)?|pct)(?:\s+points?)?\b\.?").unwrap());
/// `2 500` and `1 000 000`: digits grouped by spaces in threes (the whole answer).
static THOUSANDS_SPACE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[-+]?\d{1,3}(?: \d{3})+(?:\.\d+)?$").unwrap());
/// `x != 3` (not `5!=120`, a factorial).
static NOT_EQUAL: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(^|[a-zA-Z}\s])\s*!=").unwrap());
static AND_OR: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\s+(?:and|or)\s+").unwrap());
/// Empty places a connective leaves in a list (`19, 46, \text{ and } 82`).
static EMPTY_ITEMS: LazyLock<Regex> = LazyLock::new(|| Regex::new(r",(?:\s*,)+").unwrap());
/// A number with a decimal comma (`2,74`, `1000,99`, `0,5`): one comma between digits.
static DECIMAL_COMMA: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^([-+]?)(\d+),(\d+)$").unwrap());

fn replace_unicode(s: &str) -> Cow<'_, str> {
    if s.is_ascii() {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '−' | '–' | '—' => out.push('-'),
            '×' => out.push_str("\\times "),
            '·' | '⋅' => out.push_str("\\cdot "),
            '÷' => out.push('/'),
            'π' => out.push_str("\\pi "),
            '√' => out.push_str("\\sqrt "),
            '∞' => out.push_str("\\infty "),
            '≤' => out.push_str("\\le "),
            '≥' => out.push_str("\\ge "),
            '≠' => out.push_str("\\ne "),
            '≈' => out.push_str("\\approx "),
            '±' => out.push_str("\\pm "),
            '∪' => out.push_str("\\cup "),
            '∈' => out.push_str("\\in "),
            '°' => out.push('°'),
            '²' => out.push_str("^2"),
            '³' => out.push_str("^3"),
            // Currency signs carry no value (`1,000.99€`), like `\$`.
            '€' | '£' | '¥' => {}
            '\u{a0}' | '\u{2009}' | '\u{202f}' => out.push(' '),
            _ => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn strip_delimiters(mut s: &str) -> &str {
    loop {
        let t = s.trim();
        let inner = if let Some(x) = t.strip_prefix("$$").and_then(|x| x.strip_suffix("$$")) {
            x
        } else if let Some(x) = t.strip_prefix('$').and_then(|x| x.strip_suffix('$')) {
            if x.ends_with('\\') {
                return t;
            }
            x
        } else if let Some(x) = t.strip_prefix("\\(").and_then(|x| x.strip_suffix("\\)")) {
            x
        } else if let Some(x) = t.strip_prefix("\\[").and_then(|x| x.strip_suffix("\\]")) {
            x
        } else {
            return t;
        };
        s = inner;
    }
}

/// Replaces each `\text{…}`-like group: units (`\text{ cm}^2`) after other content are
/// dropped, connectives become commas, anything else keeps its content.
fn replace_text_groups(s: &str) -> String {
    let mut cur = s.to_string();
    // Nested groups (\text{\textbf{x}}) unwrap from the inside, a few levels at most.
    for _ in 0..4 {
        if !cur.contains('\\') {
            break;
        }
        let mut out = String::with_capacity(cur.len());
        let mut last = 0;
        let mut changed = false;
        for c in TEXT_CMD.captures_iter(&cur) {
            let m = c.get(0).unwrap();
            let content = &c[1];
            let before = &cur[..m.start()];
            out.push_str(&cur[last..m.start()]);
            let mut end = m.end();
            let has_content_before = before.chars().any(|ch| ch.is_ascii_alphanumeric());
            let trimmed = content.trim();
            if trimmed.eq_ignore_ascii_case("and") || trimmed.eq_ignore_ascii_case("or") {
                out.push(',');
            } else if has_content_before && (trimmed.is_empty() || UNIT_ONLY.is_match(content)) {
                // Drop the unit together with a following exponent (\text{cm}^2).
                if let Some(e) = UNIT_EXPONENT.find(&cur[end..]) {
                    end += e.end();
                }
            } else {
                out.push(' ');
                out.push_str(content);
                out.push(' ');
            }
            last = end;
            changed = true;
        }
        out.push_str(&cur[last.min(cur.len())..]);
        cur = out;
        if !changed {
            break;
        }
    }
    cur
}

/// LaTeX whose backslashes were all doubled by escaping it twice (`\\frac{1}{2}`, rows
/// `\\\\`), with each run of backslashes halved; other text unchanged. Text counts as
/// doubled when a command follows an even run of backslashes and none follows an odd run
/// (a real row break before a command, `\\\end`, is odd).
pub fn unescape_doubled(s: &str) -> Cow<'_, str> {
    if !s.contains("\\\\") {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let (mut i, mut doubled) = (0, false);
    while i < b.len() {
        if b[i] != b'\\' {
            i += 1;
            continue;
        }
        let start = i;
        while b.get(i) == Some(&b'\\') {
            i += 1;
        }
        if b.get(i).is_some_and(u8::is_ascii_alphabetic) {
            if !(i - start).is_multiple_of(2) {
                return Cow::Borrowed(s);
            }
            doubled = true;
        }
    }
    if !doubled {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut run = 0usize;
    for c in s.chars() {
        if c == '\\' {
            run += 1;
            if run.is_multiple_of(2) {
                out.push(c);
            }
        } else {
            run = 0;
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A normalised answer with a decimal comma read as a decimal point (`2,74` → `2.74`,
/// `1000,99`, `0,5`), when the comma cannot be a thousands separator (those are removed
/// already) and is not likely a list of two numbers: the part after the comma has two
/// digits or more, or the part before it is `0`. `None` for anything else (`1,2`).
pub fn decimal_comma(normalized: &str) -> Option<String> {
    let c = DECIMAL_COMMA.captures(normalized)?;
    let (sign, int, frac) = (&c[1], &c[2], &c[3]);
    (frac.len() >= 2 || int == "0").then(|| format!("{sign}{int}.{frac}"))
}

/// Normalises an extracted answer for parsing (see the module documentation).
pub fn normalize(raw: &str) -> String {
    let raw = unescape_doubled(raw);
    let s = replace_unicode(&raw);
    let s = strip_delimiters(&s);
    // Row breaks first, so that `\\ ` is not read as the spacing command `\ `.
    let s = s.replace("\\\\", " \\cr ");
    let s = s.replace("\\boxed", "").replace("\\fbox", "");
    let s = s
        .replace("\\dfrac", "\\frac")
        .replace("\\tfrac", "\\frac")
        .replace("\\cfrac", "\\frac");
    let s = s
        .replace("\\dbinom", "\\binom")
        .replace("\\tbinom", "\\binom");
    let s = s
        .replace("\\$", "")
        .replace("\\%", "%")
        .replace("\\{", "\\lbrace ")
        .replace("\\}", "\\rbrace ");
    let s = s
        .replace("\\lvert", "|")
        .replace("\\rvert", "|")
        .replace("\\vert", "|")
        .replace("\\mid", "|")
        .replace("\\lbrack", "[")
        .replace("\\rbrack", "]");
    let s = DEGREES.replace_all(&s, " ");
    let s = PERCENT_WORD.replace_all(&s, "%");
    let s = NOT_EQUAL.replace_all(&s, "$1 \\ne ");
    let s = THOUSANDS_LATEX.replace_all(&s, "$1$2");
    let s = THOUSANDS_LATEX.replace_all(&s, "$1$2");
    let s = replace_text_groups(&s);
    let s = SPACING.replace_all(&s, " ");
    let mut s = s.replace("\\lbrace", "\\{").replace("\\rbrace", "\\}");
    s = s.replace('$', " ");
    // Trailing punctuation and units, repeatedly ("5 cm."); an ellipsis is not
    // punctuation (`1, 2, 3, ...` is not `1, 2, 3`).
    loop {
        let t = s.trim_end();
        let t = if t.ends_with("...") {
            t
        } else {
            t.trim_end_matches(['.', ',', ';', ':']).trim_end()
        };
        let t = t.strip_suffix("\\cr").unwrap_or(t).trim_end();
        let t = match TRAILING_UNIT.captures(t) {
            Some(c) if c[2].is_empty() && SHORT_UNITS.contains(&&c[3]) => t,
            Some(c) => {
                let keep = c.get(0).unwrap().start() + c[1].len();
                t[..keep].trim_end()
            }
            _ => t,
        };
        if t.len() == s.len() {
            break;
        }
        s = t.to_string();
    }
    let s = AND_OR.replace_all(s.trim(), ",");
    let s = EMPTY_ITEMS.replace_all(&s, ",");
    let s = s.trim();
    if THOUSANDS_PLAIN.is_match(s) {
        return s.replace(',', "");
    }
    if THOUSANDS_SPACE.is_match(s) {
        return s.replace(' ', "");
    }
    collapse_spaces(s)
}

fn collapse_spaces(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for c in s.chars() {
        if c.is_whitespace() {
            space = true;
        } else {
            if space && !out.is_empty() {
                out.push(' ');
            }
            space = false;
            out.push(c);
        }
    }
    out
}

/// The form used for text answers: lower case, no spaces, no braces, no `\text`.
pub fn text_key(s: &str) -> String {
    let s = replace_text_groups(s);
    s.chars()
        .filter(|c| !c.is_whitespace() && *c != '{' && *c != '}' && *c != '\\')
        .flat_map(char::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_latex() {
        assert_eq!(normalize(r"$\dfrac{1}{2}$."), r"\frac{1}{2}");
        assert_eq!(normalize(r"10,\!080"), "10080");
        assert_eq!(normalize(r"11,\! 111,\! 111,\! 100"), "11111111100");
        assert_eq!(normalize(r"1\,000\,000"), "1000000");
        assert_eq!(normalize(r"1{,}000"), "1000");
        assert_eq!(normalize("1,000"), "1000");
        assert_eq!(normalize("(1,000)"), "(1,000)");
        assert_eq!(normalize(r"\$32,\!348"), "32348");
        assert_eq!(normalize(r"106^\circ"), "106");
        assert_eq!(normalize("45°"), "45");
        assert_eq!(normalize(r"15\mbox{ cm}^2"), "15");
        assert_eq!(normalize(r"5.4 \text{ cents}"), "5.4");
        assert_eq!(normalize(r"\text{Evelyn}"), "Evelyn");
        assert_eq!(normalize("12 inches"), "12");
        assert_eq!(normalize("12cm"), "12");
        assert_eq!(normalize("5 m"), "5");
        assert_eq!(normalize("2m"), "2m");
        assert_eq!(normalize("3s"), "3s");
        assert_eq!(
            normalize(r"\left( 3, \frac{\pi}{2} \right)"),
            r"( 3, \frac{\pi}{2} )"
        );
        assert_eq!(normalize("−5"), "-5");
        assert_eq!(normalize(r"\{1,2\}"), r"\{ 1,2\}");
    }

    #[test]
    fn doubled_backslashes_and_decimal_commas() {
        assert_eq!(unescape_doubled(r"\\frac{1}{2}"), r"\frac{1}{2}");
        assert_eq!(unescape_doubled(r"a \\\\ b \\le c"), r"a \\ b \le c");
        // Real LaTeX stays: a row break before a command, or any single command.
        assert_eq!(unescape_doubled(r"1 \\\end{pmatrix}"), r"1 \\\end{pmatrix}");
        assert_eq!(unescape_doubled(r"\frac12 \\ 3"), r"\frac12 \\ 3");
        assert_eq!(normalize(r"\\dfrac{1}{2}"), r"\frac{1}{2}");
        assert_eq!(decimal_comma("2,74").as_deref(), Some("2.74"));
        assert_eq!(decimal_comma("-1000,99").as_deref(), Some("-1000.99"));
        assert_eq!(decimal_comma("0,5").as_deref(), Some("0.5"));
        assert_eq!(decimal_comma("1,2"), None);
        assert_eq!(normalize("10,455"), "10455");
        assert_eq!(normalize("0,111"), "0,111");
        assert_eq!(normalize(r"14 {, }916"), "14916");
        assert_eq!(normalize(r"19, 46, \text{ and } 82"), "19, 46, 82");
        assert_eq!(normalize("1, 2, 3, ..."), "1, 2, 3, ...");
        assert_eq!(normalize("1, 2, 3."), "1, 2, 3");
    }

    #[test]
    fn text_keys() {
        assert_eq!(text_key(r"\text{ East }"), "east");
        assert_eq!(text_key("East"), "east");
    }
}
