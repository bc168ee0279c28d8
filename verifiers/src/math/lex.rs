//! Tokens of a normalised answer, and the exact value of a number literal.

use super::parse::{MAX_DIGITS, MAX_TOKENS, ParseError};
use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::Zero;

/// One token of an answer.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    /// A number literal as written (`12`, `0.35`, `1.5e-7`, `00`).
    Num(String),
    /// One ASCII letter.
    Letter(char),
    /// A command without its backslash (`frac`, or one symbol such as `{`).
    Cmd(String),
    /// Any other character.
    Sym(char),
}

/// Splits a normalised answer into tokens; at most [`MAX_TOKENS`], numbers of at most
/// [`MAX_DIGITS`] characters.
pub(super) fn tokenize(s: &str) -> Result<Vec<Tok>, ParseError> {
    let c: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        if out.len() > MAX_TOKENS {
            return Err(ParseError("too many tokens"));
        }
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch.is_ascii_digit()
            || (ch == '.' && c.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            let start = i;
            while i < c.len() && c[i].is_ascii_digit() {
                i += 1;
            }
            if i < c.len() && c[i] == '.' && c.get(i + 1).is_some_and(|d| d.is_ascii_digit()) {
                i += 1;
                while i < c.len() && c[i].is_ascii_digit() {
                    i += 1;
                }
            } else if i < c.len()
                && c[i] == '.'
                && !c.get(i + 1).is_some_and(|d| d.is_ascii_alphabetic())
            {
                // "5." is 5
                i += 1;
            }
            if i < c.len() && (c[i] == 'e' || c[i] == 'E') {
                let mut j = i + 1;
                if j < c.len() && (c[j] == '-' || c[j] == '+') {
                    j += 1;
                }
                if j < c.len() && c[j].is_ascii_digit() {
                    while j < c.len() && c[j].is_ascii_digit() {
                        j += 1;
                    }
                    i = j;
                }
            }
            let lit: String = c[start..i].iter().collect();
            if lit.len() > MAX_DIGITS {
                return Err(ParseError("number too long"));
            }
            out.push(Tok::Num(lit));
        } else if ch.is_ascii_alphabetic() {
            out.push(Tok::Letter(ch));
            i += 1;
        } else if ch == '\\' {
            let start = i + 1;
            let mut j = start;
            while j < c.len() && c[j].is_ascii_alphabetic() {
                j += 1;
            }
            if j == start {
                match c.get(start) {
                    Some(&x) => {
                        out.push(Tok::Cmd(x.to_string()));
                        i = start + 1;
                    }
                    None => return Err(ParseError("dangling backslash")),
                }
            } else {
                out.push(Tok::Cmd(c[start..j].iter().collect()));
                i = j;
            }
        } else {
            out.push(Tok::Sym(ch));
            i += 1;
        }
    }
    Ok(out)
}

/// The exact value of a number literal, and whether it is a non-integer written as a
/// decimal.
pub(super) fn parse_number(lit: &str) -> Result<(BigRational, bool), ParseError> {
    let (mantissa, exp) = match lit.find(['e', 'E']) {
        Some(k) => (
            &lit[..k],
            lit[k + 1..]
                .parse::<i64>()
                .map_err(|_| ParseError("bad exponent"))?,
        ),
        None => (lit, 0),
    };
    let mantissa = mantissa.strip_suffix('.').unwrap_or(mantissa);
    let (int, frac) = match mantissa.find('.') {
        Some(k) => (&mantissa[..k], &mantissa[k + 1..]),
        None => (mantissa, ""),
    };
    let digits = format!("{int}{frac}");
    let n: BigInt = if digits.is_empty() {
        BigInt::zero()
    } else {
        digits.parse().map_err(|_| ParseError("bad number"))?
    };
    let scale = exp - frac.len() as i64;
    if scale.abs() > 400 {
        return Err(ParseError("exponent too large"));
    }
    let ten = BigInt::from(10);
    let p = num_traits::pow::Pow::pow(&ten, scale.unsigned_abs() as u32);
    let v = if scale >= 0 {
        BigRational::from_integer(n * p)
    } else {
        BigRational::new(n, p)
    };
    // `27.0` and `1e3` are whole numbers and compare exactly; `0.35` and `1.5e-7` use
    // the relative tolerance.
    let decimal = (lit.contains(['e', 'E']) || !frac.is_empty()) && !v.is_integer();
    Ok((v, decimal))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        let (v, d) = parse_number("1.5e-7").unwrap();
        assert!(d);
        assert_eq!(v, BigRational::new(15.into(), 100_000_000.into()));
        assert!(!parse_number("27").unwrap().1);
        assert_eq!(
            parse_number(".35625").unwrap().0,
            BigRational::new(35625.into(), 100_000.into())
        );
    }
}
