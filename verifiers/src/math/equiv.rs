//! Deciding whether two parsed answers are the same mathematical object.
//!
//! Numbers compare exactly in Q(π, i, √n) unless a decimal literal was written (then
//! with a relative tolerance, never absolute rounding). Expressions with variables are
//! evaluated at fixed pseudo-random rational points, exactly, so polynomial and
//! rational-function identities are decided without a CAS. Equations compare their
//! right-hand sides (`x = 5` vs `5`) or their `lhs - rhs` up to a constant factor;
//! inequalities up to a positive factor (`a < b` vs `b > a`). Tuples and intervals
//! compare in order with their brackets; sets, bare lists, `±` pairs and unions compare
//! order-free; matrices elementwise.

use super::matrix;
use super::parse::{Func, Node, RelOp, has_decimal, visit};
use super::relation::{
    named_value, named_values, punctured_line, ray, rays_interval, rays_union, relation_equal,
};
use super::value::{EvalError, Exact, MAX_BITS, Value, equal_rounded, values_equal};
use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{One, ToPrimitive};

/// Largest list or set compared element by element (bounds the quadratic matching).
pub const MAX_ITEMS: usize = 64;
/// Most distinct variables an expression may have.
pub const MAX_VARS: usize = 8;
/// Largest argument of `!` and `\binom` computed exactly.
pub const MAX_FACTORIAL: u64 = 500;

/// Settings the comparison needs.
#[derive(Debug, Clone, Copy)]
pub struct CompareOptions {
    /// Relative tolerance for values written with a decimal point.
    pub rel_tol: f64,
    /// Whether `50\%` may also equal `0.5` (it always equals `50`).
    pub percent_as_fraction: bool,
    /// Points at which expressions with variables are evaluated.
    pub points: usize,
    /// Decimal places at which values written with a decimal point also count as equal
    /// when they agree after rounding (`0.333` and `1/3` at 3); `None`: off.
    pub decimal_places: Option<u32>,
}

/// Whether two computed values are equal: exactly, or within the relative tolerance (or
/// at the stated decimal places) when `tolerant` (a decimal literal was written).
fn close(x: &Value, y: &Value, tolerant: bool, opts: &CompareOptions) -> bool {
    values_equal(x, y, tolerant, opts.rel_tol)
        || (tolerant && opts.decimal_places.is_some_and(|p| equal_rounded(x, y, p)))
}

const POINTS: [(i64, i64); 11] = [
    (7, 3),
    (-5, 4),
    (11, 7),
    (3, 11),
    (-13, 5),
    (17, 9),
    (2, 13),
    (-9, 7),
    (19, 6),
    (5, 17),
    (23, 10),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PercentMode {
    Strip,
    Fraction,
}

struct Env<'a> {
    vars: &'a [(String, Value)],
    percent: PercentMode,
}

fn rational_int(v: &Value) -> Option<BigInt> {
    v.as_rational()
        .filter(|r| r.is_integer())
        .map(|r| r.to_integer())
}

fn factorial(n: &Value) -> Result<Value, EvalError> {
    let k = rational_int(n)
        .and_then(|k| k.to_u64())
        .ok_or(EvalError::NotNumeric)?;
    if k > MAX_FACTORIAL {
        return Err(EvalError::Overflow);
    }
    let mut acc = BigInt::one();
    for i in 2..=k {
        acc *= i;
    }
    Ok(Value::Exact(Exact::rational(BigRational::from_integer(
        acc,
    ))))
}

fn binomial(n: &Value, k: &Value) -> Result<Value, EvalError> {
    let n = rational_int(n).ok_or(EvalError::NotNumeric)?;
    let k = rational_int(k)
        .and_then(|k| k.to_u64())
        .ok_or(EvalError::NotNumeric)?;
    if k > MAX_FACTORIAL || n.bits() > 64 {
        return Err(EvalError::Overflow);
    }
    let mut acc = BigRational::one();
    for i in 0..k {
        acc = acc * BigRational::from_integer(&n - BigInt::from(i))
            / BigRational::from_integer(BigInt::from(i + 1));
        if acc.numer().bits() > MAX_BITS {
            return Err(EvalError::Overflow);
        }
    }
    Ok(Value::Exact(Exact::rational(acc)))
}

fn log(base: &Value, x: &Value) -> Result<Value, EvalError> {
    let (b, v) = (base.to_c64(), x.to_c64());
    if b.im != 0.0 || v.im != 0.0 || b.re <= 0.0 || v.re <= 0.0 || b.re == 1.0 {
        return Err(EvalError::Undefined);
    }
    let r = v.re.ln() / b.re.ln();
    // log_2 8 = 3 exactly when the power checks out.
    let k = r.round();
    if (r - k).abs() < 1e-9
        && k.abs() <= 4096.0
        && let Ok(p) = base.pow(&Value::int(k as i64))
        && matches!((&p, x), (Value::Exact(a), Value::Exact(b)) if a == b)
    {
        return Ok(Value::int(k as i64));
    }
    x.apply_real(|t| t.ln() / b.re.ln())
}

fn eval(n: &Node, env: &Env) -> Result<Value, EvalError> {
    Ok(match n {
        Node::Num { value, .. } => Value::Exact(Exact::rational(value.clone())),
        Node::Var(name) => env
            .vars
            .iter()
            .find(|(v, _)| v == name)
            .map(|(_, val)| val.clone())
            .ok_or(EvalError::NotNumeric)?,
        Node::Pi => Value::Exact(Exact::pi()),
        Node::E => Value::Float(super::value::C64::real(std::f64::consts::E)),
        Node::I => Value::Exact(Exact::i()),
        Node::Neg(a) => eval(a, env)?.neg(),
        Node::Add(v) => {
            let mut acc = Value::int(0);
            for t in v {
                acc = acc.add(&eval(t, env)?)?;
            }
            acc
        }
        Node::Mul(v) => {
            let mut acc = Value::int(1);
            for t in v {
                acc = acc.mul(&eval(t, env)?)?;
            }
            acc
        }
        Node::Div(a, b) => eval(a, env)?.div(&eval(b, env)?)?,
        Node::Pow(a, b) => {
            let base = eval(a, env)?;
            let e = eval(b, env)?;
            base.pow(&e)?
        }
        Node::Root(k, a) => eval(a, env)?.root(*k)?,
        Node::Fact(a) => factorial(&eval(a, env)?)?,
        Node::Percent(a) => {
            let v = eval(a, env)?;
            match env.percent {
                PercentMode::Strip => v,
                PercentMode::Fraction => v.div(&Value::int(100))?,
            }
        }
        Node::Func(f, args) => {
            let a = eval(args.first().ok_or(EvalError::NotNumeric)?, env)?;
            match f {
                Func::Sin => a.apply_real(f64::sin)?,
                Func::Cos => a.apply_real(f64::cos)?,
                Func::Tan => a.apply_real(f64::tan)?,
                Func::Cot => a.apply_real(|t| 1.0 / t.tan())?,
                Func::Sec => a.apply_real(|t| 1.0 / t.cos())?,
                Func::Csc => a.apply_real(|t| 1.0 / t.sin())?,
                Func::Asin => a.apply_real(f64::asin)?,
                Func::Acos => a.apply_real(f64::acos)?,
                Func::Atan => a.apply_real(f64::atan)?,
                Func::Sinh => a.apply_real(f64::sinh)?,
                Func::Cosh => a.apply_real(f64::cosh)?,
                Func::Tanh => a.apply_real(f64::tanh)?,
                Func::Exp => a.apply_real(f64::exp)?,
                Func::Ln => log(
                    &Value::Float(super::value::C64::real(std::f64::consts::E)),
                    &a,
                )?,
                Func::Log => {
                    let x = eval(args.get(1).ok_or(EvalError::NotNumeric)?, env)?;
                    log(&a, &x)?
                }
                Func::Abs => a.abs()?,
                Func::Binom => {
                    let k = eval(args.get(1).ok_or(EvalError::NotNumeric)?, env)?;
                    binomial(&a, &k)?
                }
                Func::Floor | Func::Ceil => match a.as_rational() {
                    Some(r) => Value::Exact(Exact::rational(if *f == Func::Floor {
                        r.floor()
                    } else {
                        r.ceil()
                    })),
                    None => a.apply_real(if *f == Func::Floor {
                        f64::floor
                    } else {
                        f64::ceil
                    })?,
                },
            }
        }
        Node::Based(..)
        | Node::Clock { .. }
        | Node::Inf
        | Node::PlusMinus(..)
        | Node::Tuple { .. }
        | Node::Set(_)
        | Node::List(_)
        | Node::Union(_)
        | Node::Matrix(_)
        | Node::Rel(..) => return Err(EvalError::NotNumeric),
        // `a : b` is the number a/b; longer ratios are not numbers.
        Node::Ratio(v) => match v.as_slice() {
            [a, b] => eval(a, env)?.div(&eval(b, env)?)?,
            _ => return Err(EvalError::NotNumeric),
        },
    })
}

/// The distinct variables of `nodes`, sorted.
pub(super) fn variables(nodes: &[&Node]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in nodes {
        visit(n, &mut |m| {
            if let Node::Var(v) = m
                && !out.contains(v)
            {
                out.push(v.clone());
            }
        });
    }
    out.sort();
    out
}

fn has_percent(n: &Node) -> bool {
    let mut found = false;
    visit(n, &mut |m| found |= matches!(m, Node::Percent(_)));
    found
}

/// Values of `f` at the evaluation points, for every point where `f` and `g` are both
/// defined, under each percent mode; `None` when either is not a number at all.
fn sample_pairs(
    a: &Node,
    g: &Node,
    opts: &CompareOptions,
    mut check: impl FnMut(&[(Value, Value)]) -> bool,
) -> Option<bool> {
    let vars = variables(&[a, g]);
    if vars.len() > MAX_VARS {
        return None;
    }
    let npoints = if vars.is_empty() {
        1
    } else {
        opts.points.clamp(1, POINTS.len())
    };
    let mut modes = vec![PercentMode::Strip];
    if opts.percent_as_fraction && (has_percent(a) || has_percent(g)) {
        modes.push(PercentMode::Fraction);
    }
    let mut any = false;
    for mode in modes {
        let mut pairs = Vec::with_capacity(npoints);
        for k in 0..npoints {
            let env_vars: Vec<(String, Value)> = vars
                .iter()
                .enumerate()
                .map(|(j, v)| {
                    let (p, q) = POINTS[(3 * k + 5 * j) % POINTS.len()];
                    (
                        v.clone(),
                        Value::Exact(Exact::rational(BigRational::new(p.into(), q.into()))),
                    )
                })
                .collect();
            let env = Env {
                vars: &env_vars,
                percent: mode,
            };
            match (eval(a, &env), eval(g, &env)) {
                (Ok(x), Ok(y)) => pairs.push((x, y)),
                (Err(EvalError::NotNumeric), _) | (_, Err(EvalError::NotNumeric)) => return None,
                _ => {}
            }
        }
        if pairs.is_empty() {
            continue;
        }
        any = true;
        if check(&pairs) {
            return Some(true);
        }
    }
    any.then_some(false)
}

fn numeric_equal(a: &Node, g: &Node, opts: &CompareOptions) -> bool {
    let tolerant = has_decimal(a) || has_decimal(g);
    sample_pairs(a, g, opts, |pairs| {
        pairs.iter().all(|(x, y)| close(x, y, tolerant, opts))
    }) == Some(true)
}

/// `fa = c · fg` for one constant `c ≠ 0` (positive when `positive`) at every point.
pub(super) fn proportional(fa: &Node, fg: &Node, positive: bool, opts: &CompareOptions) -> bool {
    let tolerant = has_decimal(fa) || has_decimal(fg);
    sample_pairs(fa, fg, opts, |pairs| {
        let mut ratio: Option<Value> = None;
        for (x, y) in pairs {
            if y.is_zero() || x.is_zero() {
                if !(y.is_zero() && x.is_zero()) {
                    return false;
                }
                continue;
            }
            let Ok(r) = x.div(y) else { return false };
            match &ratio {
                None => {
                    if positive {
                        let c = r.to_c64();
                        if c.im != 0.0 || c.re <= 0.0 {
                            return false;
                        }
                    }
                    ratio = Some(r);
                }
                Some(first) => {
                    if !close(first, &r, tolerant, opts) {
                        return false;
                    }
                }
            }
        }
        ratio.is_some()
    }) == Some(true)
}

fn inf_sign(n: &Node) -> Option<i8> {
    match n {
        Node::Inf => Some(1),
        Node::Neg(a) if **a == Node::Inf => Some(-1),
        _ => None,
    }
}

fn contains_pm(n: &Node) -> bool {
    let mut found = false;
    visit(n, &mut |m| found |= matches!(m, Node::PlusMinus(..)));
    found
}

/// Expands every `a ± b` into its two answers (at most three `±`, so eight answers).
fn expand_pm(n: &Node) -> Vec<Node> {
    fn go(n: &Node, budget: &mut u32) -> Vec<Node> {
        match n {
            Node::PlusMinus(a, b) if *budget > 0 => {
                *budget -= 1;
                let mut out = Vec::new();
                for x in go(a, budget) {
                    for y in go(b, budget) {
                        out.push(Node::Add(vec![x.clone(), y.clone()]));
                        out.push(Node::Add(vec![x.clone(), Node::Neg(Box::new(y))]));
                    }
                }
                out
            }
            Node::Neg(a) => go(a, budget)
                .into_iter()
                .map(|x| Node::Neg(Box::new(x)))
                .collect(),
            Node::Add(v) | Node::Mul(v) => {
                let mut acc: Vec<Vec<Node>> = vec![vec![]];
                for t in v {
                    let opts = go(t, budget);
                    acc = acc
                        .into_iter()
                        .flat_map(|pre| {
                            opts.iter().map(move |o| {
                                let mut p = pre.clone();
                                p.push(o.clone());
                                p
                            })
                        })
                        .collect();
                }
                acc.into_iter()
                    .map(|t| {
                        if matches!(n, Node::Add(_)) {
                            Node::Add(t)
                        } else {
                            Node::Mul(t)
                        }
                    })
                    .collect()
            }
            Node::Div(a, b) => {
                let bs = go(b, budget);
                go(a, budget)
                    .into_iter()
                    .flat_map(|x| {
                        bs.iter()
                            .map(move |y| Node::Div(Box::new(x.clone()), Box::new(y.clone())))
                    })
                    .collect()
            }
            other => vec![other.clone()],
        }
    }
    let mut budget = 3;
    match n {
        Node::List(v) | Node::Set(v) => v.iter().flat_map(|x| go(x, &mut budget)).collect(),
        other => go(other, &mut budget),
    }
}

fn multiset_equal(a: &[Node], g: &[Node], opts: &CompareOptions) -> bool {
    if a.len() != g.len() || a.len() > MAX_ITEMS {
        return false;
    }
    let mut used = vec![false; g.len()];
    'outer: for x in a {
        for (j, y) in g.iter().enumerate() {
            if !used[j] && equal(x, y, opts) {
                used[j] = true;
                continue 'outer;
            }
        }
        return false;
    }
    true
}

fn is_structure(n: &Node) -> bool {
    match n {
        Node::Tuple { .. }
        | Node::Set(_)
        | Node::List(_)
        | Node::Union(_)
        | Node::Matrix(_)
        | Node::Rel(..) => true,
        Node::Ratio(v) => v.len() != 2,
        Node::Clock { .. } => true,
        _ => false,
    }
}

/// Ratios `a : b : c` and `d : e : f` are equal when proportional (`3:5` is `6:10`).
fn ratio_equal(x: &[Node], y: &[Node], opts: &CompareOptions) -> bool {
    if x.len() != y.len() || x.len() > MAX_ITEMS || x.is_empty() {
        return false;
    }
    let cross = |a: &Node, b: &Node| Node::Mul(vec![a.clone(), b.clone()]);
    x.iter()
        .zip(y)
        .skip(1)
        .all(|(xi, yi)| numeric_equal(&cross(xi, &y[0]), &cross(&x[0], yi), opts))
}

fn vector_entries(n: &Node) -> Option<Vec<&Node>> {
    match n {
        Node::Matrix(rows) if rows.len() == 1 => Some(rows[0].iter().collect()),
        Node::Matrix(rows) if rows.iter().all(|r| r.len() == 1) => {
            Some(rows.iter().map(|r| &r[0]).collect())
        }
        Node::Tuple {
            open: '(',
            close: ')',
            items,
        } => Some(items.iter().collect()),
        _ => None,
    }
}

/// A time of day: a [`Node::Clock`], or a ratio of two whole numbers that reads as one
/// (`3:30`, compared with a clock time).
fn clock(n: &Node) -> Option<Time> {
    let whole = |x: &Node| match x {
        Node::Num {
            value,
            decimal: false,
        } if value.is_integer() => value.to_integer().to_u32(),
        _ => None,
    };
    match n {
        Node::Clock {
            hours,
            minutes,
            seconds,
            meridiem,
        } => Some(Time {
            hours: *hours,
            minutes: *minutes,
            seconds: *seconds,
            meridiem: *meridiem,
        }),
        Node::Ratio(v) => match v.as_slice() {
            [h, m] => {
                let (hours, minutes) = (whole(h)?, whole(m)?);
                (hours <= 24 && (10..60).contains(&minutes)).then_some(Time {
                    hours,
                    minutes,
                    seconds: 0,
                    meridiem: false,
                })
            }
            _ => None,
        },
        _ => None,
    }
}

/// The parts of a time of day that comparisons use.
#[derive(Debug, Clone, Copy)]
struct Time {
    hours: u32,
    minutes: u32,
    seconds: u32,
    meridiem: bool,
}

/// Two times are the same when their minutes and seconds agree and their hours do, on
/// the 24-hour clock when both say a.m. or p.m., otherwise up to 12 (`3:30` is `3:30
/// p.m.`; `12:00` is not `1:00`).
fn same_time(x: Time, y: Time) -> bool {
    x.minutes == y.minutes
        && x.seconds == y.seconds
        && if x.meridiem && y.meridiem {
            x.hours == y.hours
        } else {
            x.hours % 12 == y.hours % 12
        }
}

/// Whether answer `a` equals gold `g`.
pub fn equal(a: &Node, g: &Node, opts: &CompareOptions) -> bool {
    // `x \in S` is S.
    if let Node::Rel(_, RelOp::In, s) = a {
        return equal(s, g, opts);
    }
    if let Node::Rel(_, RelOp::In, s) = g {
        return equal(a, s, opts);
    }
    // `A + B`, `2A`, `AB` for matrices: the matrix they compute.
    if matrix::is_matrix_expression(a) {
        return matrix::reduce(a).is_some_and(|m| equal(&m, g, opts));
    }
    if matrix::is_matrix_expression(g) {
        return matrix::reduce(g).is_some_and(|m| equal(a, &m, opts));
    }
    if contains_pm(a) || contains_pm(g) {
        let (ea, eg) = (expand_pm(a), expand_pm(g));
        if ea.len() > 1 || eg.len() > 1 {
            return multiset_equal(&ea, &eg, opts);
        }
    }
    if let (Some(x), Some(y)) = (inf_sign(a), inf_sign(g)) {
        return x == y;
    }
    if inf_sign(a).is_some() || inf_sign(g).is_some() {
        return false;
    }
    // `name = value` against an answer that is not a relation: the value counts.
    match (a, g) {
        (Node::Rel(..), Node::Rel(..)) => {}
        (Node::Rel(..), _) => {
            if let Some(x) = named_value(a, g) {
                return equal(x, g, opts);
            }
        }
        (_, Node::Rel(..)) => {
            if let Some(y) = named_value(g, a) {
                return equal(a, y, opts);
            }
        }
        _ => {}
    }
    match (a, g) {
        (Node::List(x) | Node::Set(x), Node::List(y) | Node::Set(y)) => multiset_equal(x, y, opts),
        // A set answered for a tuple (`\{1, 3\}` for `(1, 3)`) counts in the tuple's
        // order only: `\{1, 3\}` is not `(3, 1)`. A gold set is order-free: `(5, 2)`
        // answers `\{2, 5\}`.
        (
            Node::Set(x),
            Node::Tuple {
                open: '(',
                close: ')',
                items: y,
            },
        ) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| equal(p, q, opts)),
        (
            Node::Tuple {
                open: '(',
                close: ')',
                items: x,
            },
            Node::Set(y),
        ) => multiset_equal(x, y, opts),
        // `x > 1 \text{ and } x < 3` against the interval `(1, 3)`.
        (Node::List(x), Node::Tuple { .. }) if rays_interval(x).is_some() => {
            rays_interval(x).is_some_and(|i| equal(&i, g, opts))
        }
        (Node::Tuple { .. }, Node::List(y)) if rays_interval(y).is_some() => {
            rays_interval(y).is_some_and(|i| equal(a, &i, opts))
        }
        // `x = 2, y = 3` against the tuple `(2, 3)`, in order (a bare `2, 3` is not a
        // tuple).
        (
            Node::List(x),
            Node::Tuple {
                open: '(',
                close: ')',
                items: y,
            },
        )
        | (
            Node::Tuple {
                open: '(',
                close: ')',
                items: y,
            },
            Node::List(x),
        ) => named_values(x).is_some_and(|values| {
            values.len() == y.len() && values.iter().zip(y).all(|(p, q)| equal(p, q, opts))
        }),
        (Node::List(x), Node::Union(_)) => rays_union(x).is_some_and(|u| equal(&u, g, opts)),
        (Node::Union(_), Node::List(y)) => rays_union(y).is_some_and(|u| equal(a, &u, opts)),
        (Node::Rel(_, RelOp::Ne, _), Node::Union(_)) => {
            punctured_line(a).is_some_and(|u| equal(&u, g, opts))
        }
        (Node::Union(_), Node::Rel(_, RelOp::Ne, _)) => {
            punctured_line(g).is_some_and(|u| equal(a, &u, opts))
        }
        (Node::Ratio(x), Node::Ratio(y)) => ratio_equal(x, y, opts),
        (Node::List(x) | Node::Set(x), other) | (other, Node::List(x) | Node::Set(x))
            if x.len() == 1 && !is_structure(other) =>
        {
            if std::ptr::eq(a, other) {
                equal(other, &x[0], opts)
            } else {
                equal(&x[0], other, opts)
            }
        }
        (Node::Union(x), Node::Union(y)) => multiset_equal(x, y, opts),
        (
            Node::Tuple {
                open: o1,
                close: c1,
                items: x,
            },
            Node::Tuple {
                open: o2,
                close: c2,
                items: y,
            },
        ) => {
            o1 == o2
                && c1 == c2
                && x.len() == y.len()
                && x.iter().zip(y).all(|(p, q)| equal(p, q, opts))
        }
        (Node::Matrix(x), Node::Matrix(y)) => {
            x.len() == y.len()
                && x.iter().zip(y).all(|(r, s)| {
                    r.len() == s.len() && r.iter().zip(s).all(|(p, q)| equal(p, q, opts))
                })
        }
        (Node::Matrix(_), Node::Tuple { .. }) | (Node::Tuple { .. }, Node::Matrix(_)) => {
            match (vector_entries(a), vector_entries(g)) {
                (Some(x), Some(y)) => {
                    x.len() == y.len() && x.iter().zip(&y).all(|(p, q)| equal(p, q, opts))
                }
                _ => false,
            }
        }
        (Node::Rel(..), Node::Tuple { .. } | Node::Union(_)) => {
            ray(a).is_some_and(|r| equal(&r, g, opts))
        }
        (Node::Tuple { .. } | Node::Union(_), Node::Rel(..)) => {
            ray(g).is_some_and(|r| equal(a, &r, opts))
        }
        (Node::Rel(l1, o1, r1), Node::Rel(l2, o2, r2)) => {
            relation_equal((l1, *o1, r1), (l2, *o2, r2), opts)
        }
        (Node::Based(d1, b1), Node::Based(d2, b2)) => {
            d1.trim_start_matches('0') == d2.trim_start_matches('0') && b1 == b2
        }
        (Node::Based(..), _) | (_, Node::Based(..)) => false,
        (Node::Clock { .. }, _) | (_, Node::Clock { .. }) => {
            matches!((clock(a), clock(g)), (Some(x), Some(y)) if same_time(x, y))
        }
        _ if is_structure(a) || is_structure(g) => false,
        _ => numeric_equal(a, g, opts),
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse::parse;
    use super::*;

    fn eq(a: &str, g: &str) -> bool {
        let o = CompareOptions {
            rel_tol: 1e-6,
            percent_as_fraction: true,
            points: 4,
            decimal_places: None,
        };
        equal(&parse(a).unwrap(), &parse(g).unwrap(), &o)
    }

    #[test]
    fn basics() {
        assert!(eq(r"\frac{1}{2}", "0.5"));
        assert!(eq(r"2\sqrt{2}", r"\sqrt{8}"));
        assert!(!eq(r"\sqrt{2}", "1.41"));
        assert!(eq("(x+1)^2", "x^2+2x+1"));
        assert!(!eq("(x+1)^2", "x^2+x+1"));
        assert!(eq("x=5", "5"));
        assert!(eq("a<b", "b>a"));
        assert!(!eq("a<b", "a>b"));
        assert!(eq("1,-2", "-2,1"));
        assert!(!eq("(1,-2)", "(-2,1)"));
        assert!(eq(r"1\pm\sqrt{19}", r"1-\sqrt{19}, 1+\sqrt{19}"));
        assert!(eq(r"50%", "0.5"));
        assert!(eq(r"50%", "50"));
        assert!(!eq(r"50%", "0.5%"));
        assert!(!eq("1e-7", "2e-7"));
        assert!(!eq("1/2^99", "1/2^98"));
        assert!(eq(r"\log_2 8", "3"));
        assert!(eq(r"(-\infty, 0]", r"(-\infty,0]"));
        assert!(!eq(r"(-\infty, 0]", r"(-\infty,0)"));
        assert!(eq(r"-2 \le x < 7", "[-2,7)"));
        assert!(eq(r"7 > x \ge -2", "[-2,7)"));
        assert!(!eq(r"-2 < x < 7", "[-2,7)"));
        assert!(eq(r"x > 2", r"(2,\infty)"));
        assert!(eq(r"x \le 2", r"(-\infty,2]"));
        assert!(!eq(r"x < 2", r"(-\infty,2]"));
    }

    #[test]
    fn named_answers_ratios_and_order_free_sets() {
        assert!(eq("(a,b)=(4,1)", "(4,1)"));
        assert!(!eq("(a,b)=(4,1)", "(1,4)"));
        assert!(eq("|PQ|=7", "7"));
        assert!(eq("PQ=3, RS=8", "8, 3"));
        assert!(eq("m=2,n=3;m=5,n=3", "(5,3),(2,3)"));
        assert!(!eq("m=2,n=3;m=5,n=3", "(3,2),(5,3)"));
        assert!(eq("S_1:S_2=3:5", "6:10"));
        assert!(!eq("3:5", "5:3"));
        assert!(eq("x=2, y=3", "(2,3)"));
        assert!(!eq("x=2, y=3", "(3,2)"));
        assert!(eq(r"\{2,5\}", "(2,5)"));
        assert!(!eq(r"\{2,5\}", "(5,2)"));
        assert!(eq("(5,2)", r"\{2,5\}"));
        assert!(!eq(r"[2,5]", r"\{2,5\}"));
        assert!(eq("2+3+4=9", "9"));
        assert!(!eq("x+y=9", "9"));
    }

    #[test]
    fn inequalities_against_unions() {
        assert!(eq(r"x \ne 3", r"(-\infty,3)\cup(3,\infty)"));
        assert!(!eq(r"x \ne 3", r"(-\infty,3]\cup(3,\infty)"));
        assert!(eq(r"x<-2, x>3", r"(-\infty,-2)\cup(3,\infty)"));
        assert!(eq(r"|x| < 2", "(-2,2)"));
        assert!(eq(r"|x| \ge 1", r"(-\infty,-1]\cup[1,\infty)"));
        assert!(eq(r"2 \le |w| \le 5/2", r"[-5/2,-2]\cup[2,5/2]"));
    }
}
