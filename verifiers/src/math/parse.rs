//! A bounded LaTeX-math parser: normalised answer text to a [`Node`] tree.
//!
//! Covers what final answers contain: numbers (decimal, scientific, mixed `1\frac12`,
//! base subscripts `204_5`), variables, `\frac`, `\sqrt[n]{}`, powers, implicit
//! products, `!`, `%`, `\pm`, functions (`\sin`, `\log_2`, `\binom`, `|x|`), relations
//! (`=`, `<`, `\le`, `\in`, ...), tuples and intervals (`(a,b]`), sets `\{…\}`, unions
//! `\cup`, bare lists `1, 2`, ratios `3:5`, clock times `12:00`, and matrices
//! (`pmatrix`, `bmatrix`, `array`). Work is
//! bounded by construction: at most [`MAX_TOKENS`] tokens and [`MAX_DEPTH`] levels of
//! nesting; anything else is a [`ParseError`], and the caller falls back to comparing
//! text.

use super::lex::{Tok, parse_number, tokenize};
use super::tree::is_integer_literal;
pub use super::tree::{Func, Node, RelOp, has_decimal, is_name, visit};
use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::Signed;

/// Most tokens an answer may have.
pub const MAX_TOKENS: usize = 600;
/// Deepest nesting of groups the parser follows.
pub const MAX_DEPTH: usize = 48;
/// Longest digit string read as a number.
pub const MAX_DIGITS: usize = 400;
/// Most relation signs in one chain (`a = b = c`) and parts of one ratio.
pub const MAX_CHAIN: usize = 16;

/// The answer is not in the supported grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot parse answer: {0}")]
pub struct ParseError(pub &'static str);

fn func_named(name: &str) -> Option<Func> {
    Some(match name {
        "sin" => Func::Sin,
        "cos" => Func::Cos,
        "tan" | "tg" => Func::Tan,
        "cot" | "ctg" => Func::Cot,
        "sec" => Func::Sec,
        "csc" | "cosec" => Func::Csc,
        "arcsin" => Func::Asin,
        "arccos" => Func::Acos,
        "arctan" => Func::Atan,
        "sinh" => Func::Sinh,
        "cosh" => Func::Cosh,
        "tanh" => Func::Tanh,
        "ln" => Func::Ln,
        "log" | "lg" => Func::Log,
        "exp" => Func::Exp,
        _ => return None,
    })
}

const GREEK: &[&str] = &[
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "varepsilon",
    "zeta",
    "eta",
    "theta",
    "vartheta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "rho",
    "sigma",
    "tau",
    "upsilon",
    "phi",
    "varphi",
    "chi",
    "psi",
    "omega",
    "Gamma",
    "Delta",
    "Theta",
    "Lambda",
    "Sigma",
    "Phi",
    "Psi",
    "Omega",
];

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    depth: usize,
}

fn num(n: i64) -> Node {
    Node::Num {
        value: BigRational::from_integer(BigInt::from(n)),
        decimal: false,
    }
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn eat_sym(&mut self, c: char) -> bool {
        if self.peek() == Some(&Tok::Sym(c)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_cmd(&mut self, name: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Cmd(n)) if n == name) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_sym(&mut self, c: char) -> Result<(), ParseError> {
        if self.eat_sym(c) {
            Ok(())
        } else {
            Err(ParseError("missing bracket"))
        }
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            Err(ParseError("nested too deeply"))
        } else {
            Ok(())
        }
    }

    fn list(&mut self) -> Result<Vec<Node>, ParseError> {
        let mut items = vec![self.union()?];
        while self.eat_sym(',') || self.eat_sym(';') {
            items.push(self.union()?);
        }
        Ok(items)
    }

    fn union(&mut self) -> Result<Node, ParseError> {
        let first = self.rel()?;
        if !matches!(self.peek(), Some(Tok::Cmd(n)) if n == "cup") {
            return Ok(first);
        }
        let mut parts = vec![first];
        while self.eat_cmd("cup") {
            parts.push(self.rel()?);
        }
        Ok(Node::Union(parts))
    }

    /// `≈`, which only ever joins the sides of a chain (`y = 2/7 \approx 0.29`).
    fn eat_approx(&mut self) -> bool {
        self.eat_cmd("approx") || self.eat_cmd("simeq") || self.eat_cmd("thickapprox")
    }

    fn rel_op(&mut self) -> Option<RelOp> {
        let op = match self.peek()? {
            Tok::Sym('=') => RelOp::Eq,
            Tok::Sym('<') => RelOp::Lt,
            Tok::Sym('>') => RelOp::Gt,
            Tok::Cmd(n) => match n.as_str() {
                "le" | "leq" | "leqslant" => RelOp::Le,
                "ge" | "geq" | "geqslant" => RelOp::Ge,
                "lt" => RelOp::Lt,
                "gt" => RelOp::Gt,
                "ne" | "neq" => RelOp::Ne,
                "in" => RelOp::In,
                _ => return None,
            },
            _ => return None,
        };
        self.pos += 1;
        Some(match op {
            RelOp::Lt if self.eat_sym('=') => RelOp::Le,
            RelOp::Gt if self.eat_sym('=') => RelOp::Ge,
            RelOp::Eq => {
                self.eat_sym('=');
                RelOp::Eq
            }
            other => other,
        })
    }

    /// A relation or a chain of them. `a = b = c` is `a = c` (the last side is the
    /// answer); in a chain with `≈` the exact sides before the first `≈` count, unless
    /// only a name precedes it (`y \approx 9` is `y = 9`); `a < x ≤ b` is an interval.
    fn rel(&mut self) -> Result<Node, ParseError> {
        let mut sides = vec![self.ratio()?];
        // `None` marks `≈`.
        let mut ops: Vec<Option<RelOp>> = Vec::new();
        loop {
            let op = if self.eat_approx() {
                None
            } else if let Some(op) = self.rel_op() {
                Some(op)
            } else {
                break;
            };
            if ops.len() >= MAX_CHAIN {
                return Err(ParseError("relation chain too long"));
            }
            let rhs = if op == Some(RelOp::In) {
                self.union()?
            } else {
                self.ratio()?
            };
            ops.push(op);
            sides.push(rhs);
        }
        if ops.is_empty() {
            return sides.pop().ok_or(ParseError("empty relation"));
        }
        if let Some(k) = ops.iter().position(Option::is_none) {
            if ops[..k].iter().any(|op| *op != Some(RelOp::Eq)) {
                return Err(ParseError("approximation in an inequality chain"));
            }
            let mut sides = sides.into_iter();
            let first = sides.next().ok_or(ParseError("empty relation"))?;
            let mut exact: Vec<Node> = sides.take(k + 1).collect();
            let approx = exact.pop();
            return Ok(match (exact.pop(), approx) {
                (Some(last), _) => rel(first, RelOp::Eq, last),
                (None, Some(value)) if is_name(&first) => rel(first, RelOp::Eq, value),
                _ => first,
            });
        }
        let ops: Vec<RelOp> = ops.into_iter().flatten().collect();
        if ops.len() == 1 || ops.iter().all(|op| *op == RelOp::Eq) {
            let last = sides.pop().ok_or(ParseError("empty relation"))?;
            let first = sides.swap_remove(0);
            return Ok(rel(first, ops[0], last));
        }
        match (ops.as_slice(), <[Node; 3]>::try_from(sides)) {
            ([op1, op2], Ok([a, x, b])) => chain_to_interval(a, *op1, x, *op2, b),
            _ => Err(ParseError("chained relation")),
        }
    }

    /// `a : b (: c …)` as a ratio, a clock time, or a single expression.
    fn ratio(&mut self) -> Result<Node, ParseError> {
        if let Some(time) = self.clock() {
            return Ok(time);
        }
        let first = self.expr()?;
        if !matches!(self.peek(), Some(Tok::Sym(':'))) {
            return Ok(first);
        }
        let mut parts = vec![first];
        while self.eat_sym(':') {
            if parts.len() >= MAX_CHAIN {
                return Err(ParseError("ratio too long"));
            }
            parts.push(self.expr()?);
        }
        Ok(Node::Ratio(parts))
    }

    /// A clock time at the cursor (see [`Node::Clock`]): `h:mm` or `h:mm:ss` then,
    /// optionally, `am` / `pm` (dots and case free), and then the end of the answer or of
    /// a list item.
    fn clock(&mut self) -> Option<Node> {
        let at = |k: usize| self.toks.get(self.pos + k);
        let (Some(Tok::Num(h)), Some(Tok::Sym(':')), Some(Tok::Num(m))) = (at(0), at(1), at(2))
        else {
            return None;
        };
        let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
        if h.len() > 2 || m.len() != 2 || !digits(h) || !digits(m) {
            return None;
        }
        let (mut hours, minutes): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
        if hours > 24 || minutes > 59 {
            return None;
        }
        let mut k = 3;
        let mut seconds = None;
        if at(3) == Some(&Tok::Sym(':'))
            && let Some(Tok::Num(sec)) = at(4)
            && sec.len() == 2
            && digits(sec)
        {
            seconds = Some(sec.parse::<u32>().ok().filter(|s| *s < 60)?);
            k = 5;
        }
        let mut half = None;
        if let Some(Tok::Letter(c)) = at(k)
            && matches!(c.to_ascii_lowercase(), 'a' | 'p')
        {
            let mut j = k + 1;
            if at(j) == Some(&Tok::Sym('.')) {
                j += 1;
            }
            if matches!(at(j), Some(Tok::Letter('m' | 'M'))) {
                half = Some(c.eq_ignore_ascii_case(&'p'));
                k = j + 1;
                if at(k) == Some(&Tok::Sym('.')) {
                    k += 1;
                }
            }
        }
        if !matches!(at(k), None | Some(Tok::Sym(',' | ';' | ')' | ']' | '}'))) {
            return None;
        }
        match half {
            Some(_) if !(1..=12).contains(&hours) => return None,
            Some(pm) => hours = hours % 12 + if pm { 12 } else { 0 },
            None if !m.starts_with('0') && seconds.is_none() => return None,
            None => {}
        }
        self.pos += k;
        Some(Node::Clock {
            hours,
            minutes,
            seconds: seconds.unwrap_or(0),
            meridiem: half.is_some(),
        })
    }

    fn expr(&mut self) -> Result<Node, ParseError> {
        let mut terms = Vec::new();
        if self.eat_sym('-') {
            terms.push(Node::Neg(Box::new(self.term()?)));
        } else if self.eat_cmd("pm") {
            let t = self.term()?;
            terms.push(Node::PlusMinus(Box::new(num(0)), Box::new(t)));
        } else {
            self.eat_sym('+');
            terms.push(self.term()?);
        }
        loop {
            if self.eat_sym('+') {
                terms.push(self.term()?);
            } else if self.eat_sym('-') {
                terms.push(Node::Neg(Box::new(self.term()?)));
            } else if self.eat_cmd("pm") || self.eat_cmd("mp") {
                let t = self.term()?;
                let acc = if terms.len() == 1 {
                    terms.pop().unwrap_or_else(|| num(0))
                } else {
                    Node::Add(std::mem::take(&mut terms))
                };
                terms = vec![Node::PlusMinus(Box::new(acc), Box::new(t))];
            } else {
                break;
            }
        }
        Ok(if terms.len() == 1 {
            terms.pop().unwrap_or_else(|| num(0))
        } else {
            Node::Add(terms)
        })
    }

    fn starts_primary(&self) -> bool {
        match self.peek() {
            Some(Tok::Num(_)) | Some(Tok::Letter(_)) => true,
            Some(Tok::Sym(c)) => *c == '(' || *c == '{',
            Some(Tok::Cmd(n)) => {
                matches!(
                    n.as_str(),
                    "frac"
                        | "sqrt"
                        | "pi"
                        | "infty"
                        | "binom"
                        | "begin"
                        | "left"
                        | "e"
                        | "angle"
                        | "measuredangle"
                        | "overline"
                ) || func_named(n).is_some()
                    || GREEK.contains(&n.as_str())
            }
            None => false,
        }
    }

    fn term(&mut self) -> Result<Node, ParseError> {
        let mut acc = self.power()?;
        loop {
            if self.eat_sym('*')
                || self.eat_cmd("cdot")
                || self.eat_cmd("times")
                || self.eat_cmd("ast")
            {
                let f = self.unary()?;
                acc = mul(acc, f);
            } else if self.eat_sym('/') || self.eat_cmd("div") {
                let f = self.unary()?;
                acc = Node::Div(Box::new(acc), Box::new(f));
            } else if self.starts_primary() {
                let f = self.power()?;
                acc = mul(acc, f);
            } else {
                return Ok(acc);
            }
        }
    }

    fn unary(&mut self) -> Result<Node, ParseError> {
        self.enter()?;
        let r = if self.eat_sym('-') {
            Ok(Node::Neg(Box::new(self.unary()?)))
        } else if self.eat_sym('+') {
            self.unary()
        } else {
            self.power()
        };
        self.depth -= 1;
        r
    }

    fn power(&mut self) -> Result<Node, ParseError> {
        let mut base = self.postfix()?;
        while self.eat_sym('^') {
            let e = self.arg()?;
            base = Node::Pow(Box::new(base), Box::new(e));
            base = self.postfix_ops(base);
        }
        Ok(base)
    }

    fn postfix_ops(&mut self, mut p: Node) -> Node {
        loop {
            if self.eat_sym('!') {
                p = Node::Fact(Box::new(p));
            } else if self.eat_sym('%') {
                p = Node::Percent(Box::new(p));
            } else {
                return p;
            }
        }
    }

    fn postfix(&mut self) -> Result<Node, ParseError> {
        let p = self.primary()?;
        Ok(self.postfix_ops(p))
    }

    /// A macro argument: a braced group, or one token (`\frac34`, `x^2`, `x^-1`).
    fn arg(&mut self) -> Result<Node, ParseError> {
        self.enter()?;
        let r = self.arg_inner();
        self.depth -= 1;
        r
    }

    fn arg_inner(&mut self) -> Result<Node, ParseError> {
        if self.eat_sym('{') {
            let inner = self.union()?;
            self.expect_sym('}')?;
            return Ok(inner);
        }
        if self.eat_sym('-') {
            return Ok(Node::Neg(Box::new(self.arg()?)));
        }
        match self.peek().cloned() {
            Some(Tok::Num(s)) => {
                // One digit only: \frac34 is 3/4.
                let mut chars = s.chars();
                let first = chars.next().ok_or(ParseError("empty number"))?;
                let rest: String = chars.collect();
                if rest.is_empty() {
                    self.pos += 1;
                } else {
                    self.toks[self.pos] = Tok::Num(rest);
                }
                if !first.is_ascii_digit() {
                    return Err(ParseError("bad argument"));
                }
                Ok(num(first as i64 - '0' as i64))
            }
            Some(Tok::Letter(_)) | Some(Tok::Cmd(_)) => self.primary(),
            _ => Err(ParseError("missing argument")),
        }
    }

    /// Raw text of a subscript (`_5`, `_{10}`, `_n`).
    fn subscript_text(&mut self) -> Result<String, ParseError> {
        let mut out = String::new();
        let braced = self.eat_sym('{');
        loop {
            match self.next() {
                Some(Tok::Num(s)) => out.push_str(&s),
                Some(Tok::Letter(c)) => out.push(c),
                Some(Tok::Cmd(n)) => out.push_str(&n),
                Some(Tok::Sym('}')) if braced => break,
                _ => return Err(ParseError("bad subscript")),
            }
            if !braced {
                break;
            }
        }
        Ok(out)
    }

    fn group(&mut self, open: char) -> Result<Node, ParseError> {
        self.enter()?;
        let items = self.list()?;
        let close = match self.next() {
            Some(Tok::Sym(c)) if c == ')' || c == ']' => c,
            _ => return Err(ParseError("missing closing bracket")),
        };
        self.depth -= 1;
        let mut items = items;
        if items.len() == 1
            && ((open == '(' && close == ')') || (open == '[' && close == ']'))
            && let Some(only) = items.pop()
        {
            return Ok(only);
        }
        Ok(Node::Tuple { open, close, items })
    }

    fn matrix(&mut self) -> Result<Node, ParseError> {
        let env = self.subscript_text()?;
        if !env.ends_with("matrix") && env != "array" {
            return Err(ParseError("unknown environment"));
        }
        if env == "array" && self.eat_sym('{') {
            while !self.eat_sym('}') {
                if self.next().is_none() {
                    return Err(ParseError("bad array spec"));
                }
            }
        }
        let mut rows: Vec<Vec<Node>> = vec![vec![]];
        loop {
            if self.eat_cmd("end") {
                let end = self.subscript_text()?;
                if end != env {
                    return Err(ParseError("mismatched environment"));
                }
                break;
            }
            if self.eat_cmd("cr") {
                rows.push(vec![]);
                continue;
            }
            let cell = self.expr()?;
            rows.last_mut().ok_or(ParseError("matrix"))?.push(cell);
            if self.eat_sym('&') {
                continue;
            }
            if !matches!(self.peek(), Some(Tok::Cmd(n)) if n == "cr" || n == "end") {
                return Err(ParseError("bad matrix cell"));
            }
        }
        if rows.last().is_some_and(|r| r.is_empty()) {
            rows.pop();
        }
        let width = rows.first().map_or(0, |r| r.len());
        if width == 0 || rows.iter().any(|r| r.len() != width) {
            return Err(ParseError("ragged matrix"));
        }
        Ok(Node::Matrix(rows))
    }

    fn function(&mut self, f: Func) -> Result<Node, ParseError> {
        let mut base = None;
        if f == Func::Log && self.eat_sym('_') {
            base = Some(self.arg()?);
        }
        // \sin^2 x is (sin x)^2; \sin^{-1} x is arcsin.
        let mut power = None;
        if self.eat_sym('^') {
            power = Some(self.arg()?);
        }
        let arg = if matches!(self.peek(), Some(Tok::Sym('('))) {
            self.postfix()?
        } else {
            // \sin 2x: an implicit product of factors, stopping at the next function.
            let mut acc = self.power()?;
            while matches!(self.peek(), Some(Tok::Num(_)) | Some(Tok::Letter(_)))
                || matches!(self.peek(), Some(Tok::Cmd(n)) if n == "pi" || GREEK.contains(&n.as_str()))
            {
                let next = self.power()?;
                acc = mul(acc, next);
            }
            acc
        };
        let inverse = power.as_ref() == Some(&Node::Neg(Box::new(num(1))));
        let f = match (f, inverse) {
            (Func::Sin, true) => Func::Asin,
            (Func::Cos, true) => Func::Acos,
            (Func::Tan, true) => Func::Atan,
            (f, _) => f,
        };
        let applied = match f {
            Func::Log => Node::Func(Func::Log, vec![base.unwrap_or_else(|| num(10)), arg]),
            _ => Node::Func(f, vec![arg]),
        };
        Ok(match power {
            Some(p) if !inverse => Node::Pow(Box::new(applied), Box::new(p)),
            _ => applied,
        })
    }

    fn primary(&mut self) -> Result<Node, ParseError> {
        self.enter()?;
        let r = self.primary_inner();
        self.depth -= 1;
        r
    }

    fn primary_inner(&mut self) -> Result<Node, ParseError> {
        let tok = self.next().ok_or(ParseError("unexpected end"))?;
        match tok {
            Tok::Num(s) => {
                let (value, decimal) = parse_number(&s)?;
                if self.eat_sym('_') {
                    if decimal {
                        return Err(ParseError("decimal with base"));
                    }
                    let base = self.subscript_text()?;
                    return Ok(Node::Based(s, base));
                }
                let n = Node::Num { value, decimal };
                // Mixed number: 1\frac{4}{5} is 1 + 4/5.
                if !decimal && matches!(self.peek(), Some(Tok::Cmd(c)) if c == "frac") {
                    let save = self.pos;
                    self.pos += 1;
                    let f = self.frac()?;
                    if let Node::Div(a, b) = &f
                        && is_integer_literal(a)
                        && is_integer_literal(b)
                    {
                        return Ok(Node::Add(vec![n, f]));
                    }
                    self.pos = save;
                }
                Ok(n)
            }
            Tok::Letter(c) => {
                if self.eat_sym('_') {
                    let sub = self.subscript_text()?;
                    return Ok(Node::Var(format!("{c}_{sub}")));
                }
                Ok(match c {
                    'e' => Node::E,
                    'i' => Node::I,
                    _ => Node::Var(c.to_string()),
                })
            }
            Tok::Sym('(') => self.group('('),
            Tok::Sym('[') => self.group('['),
            Tok::Sym('{') => {
                self.enter()?;
                let items = self.list()?;
                self.expect_sym('}')?;
                self.depth -= 1;
                let mut items = items;
                Ok(if items.len() == 1 {
                    items.pop().unwrap_or_else(|| num(0))
                } else {
                    Node::Set(items)
                })
            }
            Tok::Sym('|') => {
                self.enter()?;
                let inner = self.expr()?;
                self.expect_sym('|')?;
                self.depth -= 1;
                Ok(Node::Func(Func::Abs, vec![inner]))
            }
            Tok::Cmd(name) => match name.as_str() {
                "frac" => self.frac(),
                "sqrt" => {
                    let mut k = 2u32;
                    if self.eat_sym('[') {
                        let idx = self.expr()?;
                        self.expect_sym(']')?;
                        k = match idx {
                            Node::Num {
                                value,
                                decimal: false,
                            } if value.is_integer()
                                && value >= BigRational::from_integer(2.into())
                                && value <= BigRational::from_integer(64.into()) =>
                            {
                                value
                                    .to_integer()
                                    .try_into()
                                    .map_err(|_| ParseError("root index"))?
                            }
                            _ => return Err(ParseError("unsupported root index")),
                        };
                    }
                    let a = self.arg()?;
                    Ok(Node::Root(k, Box::new(a)))
                }
                "pi" => Ok(Node::Pi),
                "infty" | "infin" | "inf" => Ok(Node::Inf),
                "e" => Ok(Node::E),
                "binom" | "choose" => {
                    let n = self.arg()?;
                    let k = self.arg()?;
                    Ok(Node::Func(Func::Binom, vec![n, k]))
                }
                "lfloor" | "lceil" => {
                    let inner = self.expr()?;
                    let f = if name == "lfloor" {
                        Func::Floor
                    } else {
                        Func::Ceil
                    };
                    if !(self.eat_cmd("rfloor") || self.eat_cmd("rceil")) {
                        return Err(ParseError("unclosed floor"));
                    }
                    Ok(Node::Func(f, vec![inner]))
                }
                "{" => {
                    self.enter()?;
                    let items = self.list()?;
                    if !self.eat_cmd("}") {
                        return Err(ParseError("unclosed set"));
                    }
                    self.depth -= 1;
                    Ok(Node::Set(items))
                }
                "begin" => self.matrix(),
                "mathbf" | "boldsymbol" | "mathit" | "mathrm" | "operatorname" | "overline"
                | "overrightarrow" | "vec" => self.arg(),
                // `\angle ABC` and `m\angle A` name an angle by its points.
                "angle" | "measuredangle" => self.primary(),
                n if GREEK.contains(&n) => Ok(Node::Var(n.to_string())),
                n => match func_named(n) {
                    Some(f) => self.function(f),
                    None => Err(ParseError("unknown command")),
                },
            },
            Tok::Sym(_) => Err(ParseError("unexpected symbol")),
        }
    }

    fn frac(&mut self) -> Result<Node, ParseError> {
        let a = self.arg()?;
        let b = self.arg()?;
        Ok(Node::Div(Box::new(a), Box::new(b)))
    }
}

/// `a < x ≤ b` (or `b ≥ x > a`) as the interval `(a, b]`, `x` any name (`0 < g(x) < 2`);
/// `a ≤ |x| ≤ b` as a union of two intervals; other chains are errors.
fn chain_to_interval(
    a: Node,
    op1: RelOp,
    x: Node,
    op2: RelOp,
    b: Node,
) -> Result<Node, ParseError> {
    let open_of = |op| {
        if op == RelOp::Lt || op == RelOp::Gt {
            '('
        } else {
            '['
        }
    };
    let close_of = |op| {
        if op == RelOp::Lt || op == RelOp::Gt {
            ')'
        } else {
            ']'
        }
    };
    // `a ≤ |x| ≤ b` (with `a` a non-negative literal) is `[-b, -a] ∪ [a, b]`.
    if let Node::Func(Func::Abs, inner) = &x
        && inner.len() == 1
        && is_name(&inner[0])
        && is_nonnegative_literal(&a)
        && matches!((op1, op2), (RelOp::Lt | RelOp::Le, RelOp::Lt | RelOp::Le))
    {
        let (lo, hi) = (open_of(op1), close_of(op2));
        let flip = |c: char| match c {
            '(' => ')',
            ')' => '(',
            '[' => ']',
            _ => '[',
        };
        let neg = |n: &Node| Node::Neg(Box::new(n.clone()));
        return Ok(Node::Union(vec![
            Node::Tuple {
                open: flip(hi),
                close: flip(lo),
                items: vec![neg(&b), neg(&a)],
            },
            Node::Tuple {
                open: lo,
                close: hi,
                items: vec![a, b],
            },
        ]));
    }
    if !is_name(&x) {
        return Err(ParseError("chained relation"));
    }
    match (op1, op2) {
        (RelOp::Lt | RelOp::Le, RelOp::Lt | RelOp::Le) => Ok(Node::Tuple {
            open: open_of(op1),
            close: close_of(op2),
            items: vec![a, b],
        }),
        (RelOp::Gt | RelOp::Ge, RelOp::Gt | RelOp::Ge) => Ok(Node::Tuple {
            open: open_of(op2),
            close: close_of(op1),
            items: vec![b, a],
        }),
        _ => Err(ParseError("chained relation")),
    }
}

fn is_nonnegative_literal(n: &Node) -> bool {
    match n {
        Node::Num { value, .. } => !value.is_negative(),
        Node::Div(a, b) => is_nonnegative_literal(a) && is_nonnegative_literal(b),
        _ => false,
    }
}

fn rel(l: Node, op: RelOp, r: Node) -> Node {
    Node::Rel(Box::new(l), op, Box::new(r))
}

fn mul(a: Node, b: Node) -> Node {
    match a {
        Node::Mul(mut v) => {
            v.push(b);
            Node::Mul(v)
        }
        a => Node::Mul(vec![a, b]),
    }
}

/// Parses a normalised answer; a bare comma-separated list becomes [`Node::List`].
pub fn parse(s: &str) -> Result<Node, ParseError> {
    let toks = tokenize(s)?;
    if toks.is_empty() {
        return Err(ParseError("empty"));
    }
    let mut p = Parser {
        toks,
        pos: 0,
        depth: 0,
    };
    // `;` separates answers whose parts are separated by `,` (`m=2,n=3;m=5,n=3` is
    // the two pairs `(m=2, n=3)` and `(m=5, n=3)`).
    let mut groups: Vec<Vec<Node>> = vec![vec![p.union()?]];
    let mut semicolons = false;
    loop {
        if p.eat_sym(',') {
            let item = p.union()?;
            groups.last_mut().ok_or(ParseError("empty"))?.push(item);
        } else if p.eat_sym(';') {
            semicolons = true;
            groups.push(vec![p.union()?]);
        } else {
            break;
        }
    }
    if p.pos < p.toks.len() {
        return Err(ParseError("trailing input"));
    }
    let mut items: Vec<Node> = if semicolons {
        groups
            .into_iter()
            .map(|mut g| {
                if g.len() == 1 {
                    g.pop().unwrap_or_else(|| num(0))
                } else {
                    Node::Tuple {
                        open: '(',
                        close: ')',
                        items: g,
                    }
                }
            })
            .collect()
    } else {
        groups.into_iter().flatten().collect()
    };
    Ok(if items.len() == 1 {
        items.pop().unwrap_or_else(|| num(0))
    } else {
        Node::List(items)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_shapes() {
        assert!(matches!(parse(r"\frac34").unwrap(), Node::Div(..)));
        assert!(matches!(parse(r"1\frac{4}{5}").unwrap(), Node::Add(_)));
        assert!(matches!(
            parse("(1,2]").unwrap(),
            Node::Tuple {
                open: '(',
                close: ']',
                ..
            }
        ));
        assert!(matches!(parse("(x+1)").unwrap(), Node::Add(_)));
        assert!(matches!(parse("1, 2").unwrap(), Node::List(_)));
        assert!(matches!(
            parse(r"(-\infty, 2) \cup (3, \infty)").unwrap(),
            Node::Union(_)
        ));
        assert!(matches!(
            parse(r"\begin{pmatrix} 1 & 2 \cr 3 & 4 \end{pmatrix}").unwrap(),
            Node::Matrix(_)
        ));
        assert!(matches!(
            parse("x = 5").unwrap(),
            Node::Rel(_, RelOp::Eq, _)
        ));
        assert!(matches!(parse("204_5").unwrap(), Node::Based(..)));
        assert!(matches!(parse("3:5").unwrap(), Node::Ratio(v) if v.len() == 2));
        // Clock times: minutes with a leading zero, or a.m. / p.m.
        let clock = |s| match parse(s) {
            Ok(Node::Clock {
                hours,
                minutes,
                meridiem,
                ..
            }) => Some((hours, minutes, meridiem)),
            _ => None,
        };
        assert_eq!(clock("12:00"), Some((12, 0, false)));
        assert_eq!(clock("3:30 p.m"), Some((15, 30, true)));
        assert_eq!(clock("12:15am"), Some((0, 15, true)));
        assert_eq!(clock("3:30"), None);
        assert_eq!(clock("3:30:15"), Some((3, 30, false)));
        assert_eq!(clock("13:30 pm"), None);
        assert!(matches!(parse("t = 9:05").unwrap(), Node::Rel(..)));
        // Chains: the last side of `=`, the exact side before `≈`.
        let Node::Rel(_, RelOp::Eq, last) = parse("y = 2+3 = 5").unwrap() else {
            panic!("chain")
        };
        assert!(matches!(*last, Node::Num { .. }));
        assert!(matches!(
            parse(r"\frac27 \approx 0.29").unwrap(),
            Node::Div(..)
        ));
        assert!(matches!(
            parse(r"y \approx 9").unwrap(),
            Node::Rel(_, RelOp::Eq, _)
        ));
        assert!(parse(r"x < 2 \approx 3").is_err());
        // `;` separates answers, `,` their parts.
        let Node::List(groups) = parse("m=2,n=3;m=5,n=3").unwrap() else {
            panic!("groups")
        };
        assert!(matches!(&groups[0], Node::Tuple { items, .. } if items.len() == 2));
        assert!(matches!(parse(r"2 \le |w| \le 3").unwrap(), Node::Union(_)));
        assert!(matches!(parse("0 < g(x) < 2").unwrap(), Node::Tuple { .. }));
        assert!(parse(&"x=".repeat(40)).is_err());
        assert!(parse("(((").is_err());
        assert!(parse(&"(".repeat(500)).is_err());
    }
}
