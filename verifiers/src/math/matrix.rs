//! Matrix expressions: a response that writes `A + B`, `AB`, `2A`, `-A`, `A / 2` or
//! `A^2` for matrices `A`, `B` is reduced to one matrix whose entries are expressions
//! of the original entries, which the comparison then checks entry by entry. Work is
//! bounded: at most [`MAX_CELLS`] entries per matrix and powers up to [`MAX_POWER`].

use super::parse::{Node, visit};
use num_traits::ToPrimitive;

/// Most entries a matrix in an expression may have.
pub const MAX_CELLS: usize = 64;
/// Largest integer power of a matrix that is multiplied out.
pub const MAX_POWER: u32 = 6;

type Rows = Vec<Vec<Node>>;

/// A sub-expression's value: a scalar expression or a matrix of entry expressions.
enum Term {
    Scalar(Node),
    Matrix(Rows),
}

/// Whether `n` computes with matrices (`A + B`, `2A`): arithmetic with a matrix inside,
/// as opposed to a matrix written out, a scalar, or a structure such as a tuple.
pub fn is_matrix_expression(n: &Node) -> bool {
    if !matches!(
        n,
        Node::Add(_) | Node::Mul(_) | Node::Neg(_) | Node::Div(..) | Node::Pow(..)
    ) {
        return false;
    }
    let mut found = false;
    visit(n, &mut |m| found |= matches!(m, Node::Matrix(_)));
    found
}

/// The matrix an expression of matrices evaluates to, as [`Node::Matrix`]; `None` when
/// the shapes do not fit (a sum of a 2×2 and a 3×1, a scalar plus a matrix), a part is
/// not a matrix expression, or a bound is exceeded.
pub fn reduce(n: &Node) -> Option<Node> {
    match term(n)? {
        Term::Matrix(rows) => Some(Node::Matrix(rows)),
        Term::Scalar(_) => None,
    }
}

fn cells(rows: &Rows) -> usize {
    rows.len() * rows.first().map_or(0, Vec::len)
}

fn checked(rows: Rows) -> Option<Term> {
    (cells(&rows) <= MAX_CELLS).then_some(Term::Matrix(rows))
}

fn map(rows: &Rows, f: impl Fn(&Node) -> Node) -> Rows {
    rows.iter().map(|r| r.iter().map(&f).collect()).collect()
}

fn add(a: Term, b: Term) -> Option<Term> {
    match (a, b) {
        (Term::Scalar(x), Term::Scalar(y)) => Some(Term::Scalar(Node::Add(vec![x, y]))),
        (Term::Matrix(x), Term::Matrix(y)) => {
            let same = x.len() == y.len() && x.iter().zip(&y).all(|(r, s)| r.len() == s.len());
            if !same {
                return None;
            }
            let rows = x
                .into_iter()
                .zip(y)
                .map(|(r, s)| {
                    r.into_iter()
                        .zip(s)
                        .map(|(p, q)| Node::Add(vec![p, q]))
                        .collect()
                })
                .collect();
            Some(Term::Matrix(rows))
        }
        _ => None,
    }
}

fn product(a: &Rows, b: &Rows) -> Option<Term> {
    let inner = a.first()?.len();
    if inner != b.len() {
        return None;
    }
    let width = b.first()?.len();
    let rows = a
        .iter()
        .map(|r| {
            (0..width)
                .map(|j| {
                    Node::Add(
                        (0..inner)
                            .map(|k| Node::Mul(vec![r[k].clone(), b[k][j].clone()]))
                            .collect(),
                    )
                })
                .collect()
        })
        .collect();
    checked(rows)
}

fn mul(a: Term, b: Term) -> Option<Term> {
    match (a, b) {
        (Term::Scalar(x), Term::Scalar(y)) => Some(Term::Scalar(Node::Mul(vec![x, y]))),
        (Term::Scalar(s), Term::Matrix(m)) | (Term::Matrix(m), Term::Scalar(s)) => {
            Some(Term::Matrix(map(&m, |e| {
                Node::Mul(vec![s.clone(), e.clone()])
            })))
        }
        (Term::Matrix(x), Term::Matrix(y)) => product(&x, &y),
    }
}

fn power(m: Rows, e: &Node) -> Option<Term> {
    let Node::Num { value, .. } = e else {
        return None;
    };
    let k = value
        .is_integer()
        .then(|| value.to_integer().to_u32())
        .flatten()?;
    if !(1..=MAX_POWER).contains(&k) || m.len() != m.first()?.len() {
        return None;
    }
    let mut acc = m.clone();
    for _ in 1..k {
        acc = match product(&acc, &m)? {
            Term::Matrix(rows) => rows,
            Term::Scalar(_) => return None,
        };
    }
    Some(Term::Matrix(acc))
}

fn term(n: &Node) -> Option<Term> {
    if !is_matrix_expression(n) {
        return match n {
            Node::Matrix(rows) if cells(rows) <= MAX_CELLS => Some(Term::Matrix(rows.clone())),
            Node::Matrix(_) => None,
            other => {
                let mut structure = false;
                visit(other, &mut |m| {
                    structure |= matches!(
                        m,
                        Node::Tuple { .. }
                            | Node::Set(_)
                            | Node::List(_)
                            | Node::Union(_)
                            | Node::Rel(..)
                            | Node::Ratio(_)
                            | Node::Clock { .. }
                            | Node::PlusMinus(..)
                    )
                });
                (!structure).then(|| Term::Scalar(other.clone()))
            }
        };
    }
    match n {
        Node::Add(v) => fold(v, add),
        Node::Mul(v) => fold(v, mul),
        Node::Neg(a) => Some(match term(a)? {
            Term::Scalar(s) => Term::Scalar(Node::Neg(Box::new(s))),
            Term::Matrix(m) => Term::Matrix(map(&m, |e| Node::Neg(Box::new(e.clone())))),
        }),
        Node::Div(a, b) => match (term(a)?, term(b)?) {
            (Term::Matrix(m), Term::Scalar(s)) => Some(Term::Matrix(map(&m, |e| {
                Node::Div(Box::new(e.clone()), Box::new(s.clone()))
            }))),
            _ => None,
        },
        Node::Pow(a, e) => match term(a)? {
            Term::Matrix(m) => power(m, e),
            Term::Scalar(_) => None,
        },
        _ => None,
    }
}

fn fold(v: &[Node], op: fn(Term, Term) -> Option<Term>) -> Option<Term> {
    let mut it = v.iter();
    let mut acc = term(it.next()?)?;
    for x in it {
        acc = op(acc, term(x)?)?;
    }
    Some(acc)
}

#[cfg(test)]
mod tests {
    use super::super::parse::parse;
    use super::*;

    fn shape(s: &str) -> Option<(usize, usize)> {
        match reduce(&parse(s).ok()?)? {
            Node::Matrix(rows) => Some((rows.len(), rows[0].len())),
            _ => None,
        }
    }

    #[test]
    fn shapes_of_matrix_expressions() {
        let a = r"\begin{pmatrix} 1 & 2 \cr 3 & 4 \end{pmatrix}";
        let col = r"\begin{pmatrix} 1 \cr 2 \end{pmatrix}";
        assert_eq!(shape(&format!("{a} + {a}")), Some((2, 2)));
        assert_eq!(shape(&format!("{a} {col}")), Some((2, 1)));
        assert_eq!(shape(&format!("2 {a}")), Some((2, 2)));
        assert_eq!(shape(&format!("-{a}")), Some((2, 2)));
        assert_eq!(shape(&format!("{a}^2")), Some((2, 2)));
        assert_eq!(shape(&format!("{a} / 2")), Some((2, 2)));
        // Shapes that do not fit, and scalars, are not matrices.
        assert_eq!(shape(&format!("{a} + {col}")), None);
        assert_eq!(shape(&format!("{col} {a}")), None);
        assert_eq!(shape(&format!("1 + {a}")), None);
        assert_eq!(shape(&format!("{col}^2")), None);
        assert_eq!(shape("1 + 2"), None);
    }
}
