//! The expression tree a parsed answer is: [`Node`] with its functions ([`Func`]) and
//! relation signs ([`RelOp`]), and walks over it.

use num_rational::BigRational;

/// Functions of one (or, for `\binom` and `\log_b`, two) arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    /// sine
    Sin,
    /// cosine
    Cos,
    /// tangent
    Tan,
    /// cotangent
    Cot,
    /// secant
    Sec,
    /// cosecant
    Csc,
    /// arcsine
    Asin,
    /// arccosine
    Acos,
    /// arctangent
    Atan,
    /// hyperbolic sine
    Sinh,
    /// hyperbolic cosine
    Cosh,
    /// hyperbolic tangent
    Tanh,
    /// natural logarithm
    Ln,
    /// logarithm; the first argument is the base (10 when not written)
    Log,
    /// exponential
    Exp,
    /// absolute value
    Abs,
    /// binomial coefficient (two arguments)
    Binom,
    /// floor
    Floor,
    /// ceiling
    Ceil,
}

/// A relation symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelOp {
    /// `=`
    Eq,
    /// `≠`
    Ne,
    /// `<`
    Lt,
    /// `≤`
    Le,
    /// `>`
    Gt,
    /// `≥`
    Ge,
    /// `∈`
    In,
}

/// A parsed answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// A number; `decimal` marks a non-integer written with a decimal point or in
    /// scientific notation, which makes comparisons use the relative tolerance.
    Num {
        /// Exact value of the literal.
        value: BigRational,
        /// Whether the literal is a non-integer written as a decimal (`0.35`, `1.5e-7`).
        decimal: bool,
    },
    /// A number written in another base, `digits_base`.
    Based(String, String),
    /// A variable (single letter, greek letter name, or with a subscript `x_1`).
    Var(String),
    /// π
    Pi,
    /// Euler's number.
    E,
    /// The imaginary unit.
    I,
    /// ∞ (only meaningful inside intervals).
    Inf,
    /// Unary minus.
    Neg(Box<Node>),
    /// Sum of terms.
    Add(Vec<Node>),
    /// Product of factors.
    Mul(Vec<Node>),
    /// Quotient.
    Div(Box<Node>, Box<Node>),
    /// Power.
    Pow(Box<Node>, Box<Node>),
    /// Function application.
    Func(Func, Vec<Node>),
    /// `k`-th root.
    Root(u32, Box<Node>),
    /// Factorial.
    Fact(Box<Node>),
    /// Percentage.
    Percent(Box<Node>),
    /// `a ± b`: two answers.
    PlusMinus(Box<Node>, Box<Node>),
    /// Parenthesised or bracketed sequence: tuple, point or interval.
    Tuple {
        /// Opening bracket, `(` or `[`.
        open: char,
        /// Closing bracket, `)` or `]`.
        close: char,
        /// Elements.
        items: Vec<Node>,
    },
    /// `\{…\}`: an order-free set.
    Set(Vec<Node>),
    /// A bare comma-separated list of answers (order-free).
    List(Vec<Node>),
    /// Union of intervals or sets.
    Union(Vec<Node>),
    /// Matrix rows.
    Matrix(Vec<Vec<Node>>),
    /// A relation `lhs op rhs`.
    Rel(Box<Node>, RelOp, Box<Node>),
    /// A ratio `a : b` (or `a : b : c`).
    Ratio(Vec<Node>),
    /// A clock time: `h:mm` with the minutes written with a leading zero (`12:00`,
    /// `1:05`), with seconds (`3:30:15`) or followed by `a.m.` / `p.m.` (`3:30 pm`), which
    /// makes it a time of day rather than a ratio.
    Clock {
        /// Hours; on the 24-hour clock when `a.m.` or `p.m.` was written.
        hours: u32,
        /// Minutes.
        minutes: u32,
        /// Seconds (`12:00:30`; 0 when not written).
        seconds: u32,
        /// Whether `a.m.` or `p.m.` was written (otherwise the hour is known up to 12).
        meridiem: bool,
    },
}

/// Whether `n` names a quantity rather than computing one: a variable (`x`, `x_1`,
/// `\alpha`), a function value or product of letters (`g(t)`, `f(2)`, `P(A, B)`, `PQ`,
/// `\overline{AB}`, `\angle ABC`), `|PQ|`, a tuple of names (`(a, b)`) or a ratio of
/// names (`S_1 : S_2`). `name = value` then gives `value`.
pub fn is_name(n: &Node) -> bool {
    match n {
        Node::Var(_) => true,
        Node::Mul(v) => {
            let argument = |f: &Node| match f {
                Node::Tuple {
                    open: '(',
                    close: ')',
                    items,
                } => items.iter().all(|x| is_name(x) || is_integer_literal(x)),
                other => matches!(other, Node::Var(_)) || is_integer_literal(other),
            };
            matches!(v.first(), Some(Node::Var(_))) && v.len() <= 8 && v.iter().all(argument)
        }
        Node::Func(Func::Abs, v) => v.len() == 1 && is_name(&v[0]),
        Node::Tuple {
            open: '(',
            close: ')',
            items,
        } => !items.is_empty() && items.iter().all(is_name),
        Node::Ratio(v) => v.iter().all(is_name),
        _ => false,
    }
}

/// Whether `n` is a whole number written without a decimal point.
pub(super) fn is_integer_literal(n: &Node) -> bool {
    matches!(n, Node::Num { value, decimal: false } if value.is_integer())
}

/// Whether the tree contains a decimal literal (comparisons then use the tolerance).
pub fn has_decimal(n: &Node) -> bool {
    let mut found = false;
    visit(n, &mut |m| {
        if matches!(m, Node::Num { decimal: true, .. }) {
            found = true;
        }
    });
    found
}

/// Calls `f` on every node of the tree.
pub fn visit(n: &Node, f: &mut impl FnMut(&Node)) {
    f(n);
    match n {
        Node::Neg(a) | Node::Root(_, a) | Node::Fact(a) | Node::Percent(a) => visit(a, f),
        Node::Div(a, b) | Node::Pow(a, b) | Node::PlusMinus(a, b) | Node::Rel(a, _, b) => {
            visit(a, f);
            visit(b, f);
        }
        Node::Add(v)
        | Node::Mul(v)
        | Node::Func(_, v)
        | Node::Set(v)
        | Node::List(v)
        | Node::Union(v)
        | Node::Ratio(v) => v.iter().for_each(|x| visit(x, f)),
        Node::Tuple { items, .. } => items.iter().for_each(|x| visit(x, f)),
        Node::Matrix(rows) => rows.iter().flatten().for_each(|x| visit(x, f)),
        Node::Num { .. }
        | Node::Clock { .. }
        | Node::Based(..)
        | Node::Var(_)
        | Node::Pi
        | Node::E
        | Node::I
        | Node::Inf => {}
    }
}
