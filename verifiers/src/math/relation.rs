//! Relations: equations and inequalities against each other and against the values and
//! intervals they describe. `name = value` gives its value; equations compare as
//! `lhs - rhs` up to a constant factor, inequalities up to a positive one; a one-sided
//! inequality is a ray (`x > 2` is `(2, ∞)`), `x ≠ a` the line without `a`, a list of
//! rays joined by "or" their union, and two rays that bound a variable from both sides
//! (joined by "and") the interval between them.

use super::equiv::{CompareOptions, MAX_ITEMS, equal, proportional, variables};
use super::parse::{Func, Node, RelOp, is_name, visit};

fn diff(l: &Node, r: &Node) -> Node {
    Node::Add(vec![l.clone(), Node::Neg(Box::new(r.clone()))])
}

fn mentions(n: &Node, var: &str) -> bool {
    let mut found = false;
    visit(n, &mut |m| found |= matches!(m, Node::Var(v) if v == var));
    found
}

/// `(kind, positive side)`: `a < b` and `b > a` both give `(Lt, b - a)`.
fn canonical_relation(l: &Node, op: RelOp, r: &Node) -> (RelOp, Node) {
    match op {
        RelOp::Lt => (RelOp::Lt, diff(r, l)),
        RelOp::Gt => (RelOp::Lt, diff(l, r)),
        RelOp::Le => (RelOp::Le, diff(r, l)),
        RelOp::Ge => (RelOp::Le, diff(l, r)),
        other => (other, diff(l, r)),
    }
}

/// The variables a name stands for, which its value may not mention: the function of a
/// function value (`f` of `f(x)`, `P` of `P(A, B)`: the arguments may appear in the
/// value), every variable of any other name (`x`, `(a, b)`, `|PQ|`).
fn name_vars(n: &Node) -> Vec<String> {
    match n {
        Node::Mul(v) if v.len() > 1 => match &v[0] {
            Node::Var(f) => vec![f.clone()],
            _ => variables(&[n]),
        },
        _ => variables(&[n]),
    }
}

/// The value a relation `name = value` gives (`(a,b)=(4,1)`, `g(t)=7`, `|PQ|=7`,
/// `f(x) = x^2 + 1`), when the value does not mention the name and neither does `other`,
/// the answer it is compared with; a computation with no variables on either side
/// (`2+3+4 = 9`) gives its result too. An equation that constrains variables
/// (`7 = 11a + c`) gives nothing: one of its sides is not the answer.
pub(super) fn named_value<'a>(n: &'a Node, other: &Node) -> Option<&'a Node> {
    let Node::Rel(l, RelOp::Eq, r) = n else {
        return None;
    };
    if is_name(l) {
        let vars = name_vars(l);
        return vars
            .iter()
            .all(|v| !mentions(r, v) && !mentions(other, v))
            .then_some(&**r);
    }
    variables(&[l, r]).is_empty().then_some(&**r)
}

/// Whether two relations are the same: `name = value` with the same name compares the
/// values; otherwise equations up to a constant factor and inequalities up to a positive
/// one (`a < b` is `b > a`).
pub(super) fn relation_equal(
    a: (&Node, RelOp, &Node),
    g: (&Node, RelOp, &Node),
    opts: &CompareOptions,
) -> bool {
    if let ((x, RelOp::Eq, ra), (y, RelOp::Eq, rg)) = (a, g)
        && is_name(x)
        && x == y
        && name_vars(x)
            .iter()
            .all(|v| !mentions(ra, v) && !mentions(rg, v))
    {
        return equal(ra, rg, opts);
    }
    let (ka, fa) = canonical_relation(a.0, a.1, a.2);
    let (kg, fg) = canonical_relation(g.0, g.1, g.2);
    if ka != kg {
        return false;
    }
    proportional(&fa, &fg, matches!(ka, RelOp::Lt | RelOp::Le), opts)
}

/// `x ≠ a` as `(-∞, a) ∪ (a, ∞)`.
pub(super) fn punctured_line(n: &Node) -> Option<Node> {
    let Node::Rel(l, RelOp::Ne, r) = n else {
        return None;
    };
    let point = match (&**l, &**r) {
        (Node::Var(_), p) | (p, Node::Var(_)) => p,
        _ => return None,
    };
    let open = |items| Node::Tuple {
        open: '(',
        close: ')',
        items,
    };
    Some(Node::Union(vec![
        open(vec![Node::Neg(Box::new(Node::Inf)), point.clone()]),
        open(vec![point.clone(), Node::Inf]),
    ]))
}

/// A list of one-sided inequalities of one variable (`x < -2, x > 3`, from
/// `x < -2 \text{ or } x > 3`) as the union of their rays.
pub(super) fn rays_union(items: &[Node]) -> Option<Node> {
    if items.len() < 2 || items.len() > MAX_ITEMS {
        return None;
    }
    items
        .iter()
        .map(ray)
        .collect::<Option<Vec<Node>>>()
        .map(Node::Union)
}

/// The values of a list of `name = value` items with distinct names (`x = 2, y = 3`),
/// to compare with a tuple in order.
pub(super) fn named_values(items: &[Node]) -> Option<Vec<&Node>> {
    let mut names: Vec<&Node> = Vec::new();
    let mut values = Vec::new();
    for it in items {
        let Node::Rel(l, RelOp::Eq, r) = it else {
            return None;
        };
        if !is_name(l) || names.contains(&&**l) {
            return None;
        }
        names.push(l);
        values.push(&**r);
    }
    Some(values)
}

/// Two one-sided inequalities that bound one variable from both sides (`x > 1, x < 3`,
/// from `x > 1 \text{ and } x < 3`) as the interval between them, `(1, 3)`.
pub(super) fn rays_interval(items: &[Node]) -> Option<Node> {
    let [p, q] = items else { return None };
    let name = |n: &Node| match n {
        Node::Rel(l, _, r) => Some(if is_name(l) { l.clone() } else { r.clone() }),
        _ => None,
    };
    if name(p)? != name(q)? {
        return None;
    }
    let ends = |n: &Node| match ray(n)? {
        Node::Tuple { open, close, items } => match <[Node; 2]>::try_from(items) {
            Ok([lo, hi]) => Some((open, lo, hi, close)),
            Err(_) => None,
        },
        _ => None,
    };
    let (a, b) = (ends(p)?, ends(q)?);
    let (lower, upper) = match (&a.2, &b.1) {
        (Node::Inf, Node::Neg(_)) => (a, b),
        _ => (b, a),
    };
    (lower.2 == Node::Inf && upper.1 == Node::Neg(Box::new(Node::Inf))).then(|| Node::Tuple {
        open: lower.0,
        close: upper.3,
        items: vec![lower.1, upper.2],
    })
}

/// `x > a` as `(a, ∞)`, `x ≤ a` as `(-∞, a]` (and `a < x` likewise), for comparing a
/// one-sided inequality with an interval.
pub(super) fn ray(n: &Node) -> Option<Node> {
    let Node::Rel(l, op, r) = n else { return None };
    if let Node::Func(Func::Abs, v) = &**l
        && v.len() == 1
        && is_name(&v[0])
    {
        return abs_interval(*op, r);
    }
    let (op, bound) = match (&**l, &**r) {
        (x, b) if is_name(x) => (*op, b),
        (b, x) if is_name(x) => (
            match op {
                RelOp::Lt => RelOp::Gt,
                RelOp::Gt => RelOp::Lt,
                RelOp::Le => RelOp::Ge,
                RelOp::Ge => RelOp::Le,
                other => *other,
            },
            b,
        ),
        _ => return None,
    };
    let inf = Node::Inf;
    let minus_inf = Node::Neg(Box::new(Node::Inf));
    let (open, close, items) = match op {
        RelOp::Gt => ('(', ')', vec![bound.clone(), inf]),
        RelOp::Ge => ('[', ')', vec![bound.clone(), inf]),
        RelOp::Lt => ('(', ')', vec![minus_inf, bound.clone()]),
        RelOp::Le => ('(', ']', vec![minus_inf, bound.clone()]),
        _ => return None,
    };
    Some(Node::Tuple { open, close, items })
}

/// `|x| < b` as `(-b, b)`; `|x| > b` as `(-∞, -b) ∪ (b, ∞)` (closed ends for `≤`, `≥`).
fn abs_interval(op: RelOp, b: &Node) -> Option<Node> {
    let neg = |n: &Node| Node::Neg(Box::new(n.clone()));
    let (open, close) = match op {
        RelOp::Lt | RelOp::Gt => ('(', ')'),
        RelOp::Le | RelOp::Ge => ('[', ']'),
        _ => return None,
    };
    Some(match op {
        RelOp::Lt | RelOp::Le => Node::Tuple {
            open,
            close,
            items: vec![neg(b), b.clone()],
        },
        _ => Node::Union(vec![
            Node::Tuple {
                open: '(',
                close,
                items: vec![neg(&Node::Inf), neg(b)],
            },
            Node::Tuple {
                open,
                close: ')',
                items: vec![b.clone(), Node::Inf],
            },
        ]),
    })
}
