//! Numbers the verifier computes with: exact values in Q(π, i, √n) and a complex
//! floating-point fallback.
//!
//! An exact value is a finite sum of terms `c · π^k · √n` with `c` a big rational and
//! `n` a square-free integer (negative `n` carries the imaginary unit: `√-3 = i√3`).
//! Square-free radicals are linearly independent over Q and π is transcendental, so this
//! representation is unique and equality is a structural test, with no rounding at all.
//! Work is bounded by construction: coefficients are capped at [`MAX_BITS`] bits,
//! radicands at [`MAX_RADICAND`], and sums at [`MAX_TERMS`] terms; an operation that
//! would exceed a cap (or is not closed in this field, such as `sin`) falls back to
//! complex `f64` arithmetic, and the comparison then uses the relative tolerance.

use num_bigint::BigInt;
use num_integer::Integer;
use num_rational::BigRational;
use num_traits::{One, Signed, ToPrimitive, Zero};
use std::collections::BTreeMap;

/// Largest numerator or denominator (in bits) an exact value may hold.
pub const MAX_BITS: u64 = 4096;
/// Largest square-free radicand kept exactly.
pub const MAX_RADICAND: i64 = 1_000_000_000;
/// Largest number of terms in an exact sum.
pub const MAX_TERMS: usize = 16;
/// Largest integer exponent applied exactly; larger powers go to floating point.
pub const MAX_EXPONENT: u64 = 4096;

/// Why a value could not be computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalError {
    /// Division by zero, log of zero, a pole of a function.
    Undefined,
    /// A result that is not finite even in floating point.
    Overflow,
    /// The expression is not a number (a set, an infinity, text).
    NotNumeric,
    /// The exact form would exceed a cap or leave the field; the caller retries in
    /// floating point.
    Inexact,
}

/// The non-rational part of a term: `π^pi · √rad`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mono {
    /// Power of π.
    pub pi: i32,
    /// Square-free radicand; `1` for none, `-1` for `i`.
    pub rad: i64,
}

const ONE_MONO: Mono = Mono { pi: 0, rad: 1 };

/// An exact value: a sum of rational multiples of distinct monomials, zero terms dropped.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Exact(BTreeMap<Mono, BigRational>);

/// A complex floating-point number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct C64 {
    /// Real part.
    pub re: f64,
    /// Imaginary part.
    pub im: f64,
}

/// A computed value: exact when possible, floating point otherwise.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// An exact element of Q(π, i, √n).
    Exact(Exact),
    /// A floating-point approximation.
    Float(C64),
}

fn bits_ok(r: &BigRational) -> bool {
    r.numer().bits() <= MAX_BITS && r.denom().bits() <= MAX_BITS
}

fn check(r: BigRational) -> Result<BigRational, EvalError> {
    if bits_ok(&r) {
        Ok(r)
    } else {
        Err(EvalError::Inexact)
    }
}

/// Splits `n` (non-zero) into `(s, f)` with `n = s² · f` and `f` square-free, by trial
/// division; `None` when `|n| > 10^10` (more than 10^5 divisions).
fn square_free_split(n: i128) -> Option<(i128, i128)> {
    let sign = if n < 0 { -1 } else { 1 };
    let mut m = n.abs();
    if m > 10_000_000_000 {
        return None;
    }
    let mut s: i128 = 1;
    let mut f: i128 = 1;
    let mut p: i128 = 2;
    while p * p <= m {
        let mut e = 0;
        while m % p == 0 {
            m /= p;
            e += 1;
        }
        for _ in 0..e / 2 {
            s *= p;
        }
        if e % 2 == 1 {
            f *= p;
        }
        p += if p == 2 { 1 } else { 2 };
    }
    f *= m;
    Some((s, sign * f))
}

fn prime_factors(n: i64) -> Vec<i64> {
    let mut out = Vec::new();
    if n < 0 {
        out.push(-1);
    }
    let mut m = n.unsigned_abs();
    let mut p = 2u64;
    while p * p <= m {
        if m.is_multiple_of(p) {
            out.push(p as i64);
            while m.is_multiple_of(p) {
                m /= p;
            }
        }
        p += if p == 2 { 1 } else { 2 };
    }
    if m > 1 {
        out.push(m as i64);
    }
    out
}

impl Exact {
    /// The exact value of a rational number.
    pub fn rational(r: BigRational) -> Self {
        let mut m = BTreeMap::new();
        if !r.is_zero() {
            m.insert(ONE_MONO, r);
        }
        Exact(m)
    }

    /// The exact value of an integer.
    pub fn int(n: i64) -> Self {
        Self::rational(BigRational::from_integer(BigInt::from(n)))
    }

    fn mono(m: Mono) -> Self {
        let mut map = BTreeMap::new();
        map.insert(m, BigRational::one());
        Exact(map)
    }

    /// π.
    pub fn pi() -> Self {
        Self::mono(Mono { pi: 1, rad: 1 })
    }

    /// The imaginary unit.
    pub fn i() -> Self {
        Self::mono(Mono { pi: 0, rad: -1 })
    }

    /// Whether the value is zero.
    pub fn is_zero(&self) -> bool {
        self.0.is_empty()
    }

    /// The value as a rational number, if it is one.
    pub fn as_rational(&self) -> Option<BigRational> {
        match self.0.len() {
            0 => Some(BigRational::zero()),
            1 => self.0.get(&ONE_MONO).cloned(),
            _ => None,
        }
    }

    /// The value as a real float if it has no imaginary part.
    pub fn to_c64(&self) -> C64 {
        let mut re = 0.0;
        let mut im = 0.0;
        for (m, c) in &self.0 {
            let c = c.to_f64().unwrap_or(f64::NAN);
            let v = c * std::f64::consts::PI.powi(m.pi) * (m.rad.unsigned_abs() as f64).sqrt();
            if m.rad < 0 {
                im += v;
            } else {
                re += v;
            }
        }
        C64 { re, im }
    }

    /// Sum.
    pub fn add(&self, other: &Exact) -> Result<Exact, EvalError> {
        let mut out = self.0.clone();
        for (m, c) in &other.0 {
            let e = out.entry(*m).or_insert_with(BigRational::zero);
            *e += c;
            if e.is_zero() {
                out.remove(m);
            } else if !bits_ok(e) {
                return Err(EvalError::Inexact);
            }
        }
        if out.len() > MAX_TERMS {
            return Err(EvalError::Inexact);
        }
        Ok(Exact(out))
    }

    /// Negation.
    pub fn neg(&self) -> Exact {
        Exact(self.0.iter().map(|(m, c)| (*m, -c)).collect())
    }

    fn scale(&self, r: &BigRational) -> Result<Exact, EvalError> {
        let mut out = BTreeMap::new();
        for (m, c) in &self.0 {
            let v = check(c * r)?;
            if !v.is_zero() {
                out.insert(*m, v);
            }
        }
        Ok(Exact(out))
    }

    /// Product.
    pub fn mul(&self, other: &Exact) -> Result<Exact, EvalError> {
        if self.0.len() * other.0.len() > 4 * MAX_TERMS * MAX_TERMS {
            return Err(EvalError::Inexact);
        }
        let mut out: BTreeMap<Mono, BigRational> = BTreeMap::new();
        for (ma, ca) in &self.0 {
            for (mb, cb) in &other.0 {
                let (a, b) = (ma.rad as i128, mb.rad as i128);
                let g = a.abs().gcd(&b.abs());
                let rad = (a / g) * (b / g);
                let mut factor = g;
                if a < 0 && b < 0 {
                    factor = -factor;
                }
                if rad.abs() > MAX_RADICAND as i128 {
                    return Err(EvalError::Inexact);
                }
                let pi = ma.pi.checked_add(mb.pi).ok_or(EvalError::Inexact)?;
                if pi.abs() > 64 {
                    return Err(EvalError::Inexact);
                }
                let m = Mono {
                    pi,
                    rad: rad as i64,
                };
                let c = check(ca * cb * BigRational::from_integer(BigInt::from(factor)))?;
                let e = out.entry(m).or_insert_with(BigRational::zero);
                *e += c;
                if e.is_zero() {
                    out.remove(&m);
                }
            }
        }
        if out.len() > MAX_TERMS {
            return Err(EvalError::Inexact);
        }
        Ok(Exact(out))
    }

    /// The conjugate under `√p ↦ -√p` (`p = -1` conjugates `i`).
    fn conjugate(&self, p: i64) -> Exact {
        Exact(
            self.0
                .iter()
                .map(|(m, c)| {
                    let flips = if p == -1 { m.rad < 0 } else { m.rad % p == 0 };
                    (*m, if flips { -c } else { c.clone() })
                })
                .collect(),
        )
    }

    /// Reciprocal, rationalising the denominator with Galois conjugates.
    pub fn recip(&self) -> Result<Exact, EvalError> {
        if self.is_zero() {
            return Err(EvalError::Undefined);
        }
        let pi = *self.0.keys().next().map(|m| &m.pi).unwrap_or(&0);
        if self.0.keys().any(|m| m.pi != pi) {
            return Err(EvalError::Inexact);
        }
        // Divide out π^pi, then rationalise prime by prime.
        let mut den = Exact(
            self.0
                .iter()
                .map(|(m, c)| (Mono { pi: 0, rad: m.rad }, c.clone()))
                .collect(),
        );
        let mut num = Exact::mono(Mono { pi: -pi, rad: 1 });
        let mut primes: Vec<i64> = Vec::new();
        for m in den.0.keys() {
            for p in prime_factors(m.rad) {
                if !primes.contains(&p) {
                    primes.push(p);
                }
            }
        }
        if primes.len() > 6 {
            return Err(EvalError::Inexact);
        }
        for p in primes {
            let c = den.conjugate(p);
            num = num.mul(&c)?;
            den = den.mul(&c)?;
        }
        let r = den.as_rational().ok_or(EvalError::Inexact)?;
        if r.is_zero() {
            return Err(EvalError::Undefined);
        }
        num.scale(&r.recip())
    }

    /// Integer power.
    pub fn powi(&self, e: &BigInt) -> Result<Exact, EvalError> {
        let neg = e.is_negative();
        let mut n = e.abs().to_u64().ok_or(EvalError::Inexact)?;
        if n > MAX_EXPONENT {
            return Err(EvalError::Inexact);
        }
        if self.is_zero() {
            return if neg {
                Err(EvalError::Undefined)
            } else if n == 0 {
                Ok(Exact::int(1))
            } else {
                Ok(Exact::default())
            };
        }
        // A single rational: check the result size before computing it.
        if let Some(r) = self.as_rational() {
            let bits = r.numer().bits().max(r.denom().bits());
            if bits.saturating_mul(n) > MAX_BITS {
                return Err(EvalError::Inexact);
            }
            let p = num_traits::pow::Pow::pow(&r, n as u32);
            return Ok(Exact::rational(if neg { p.recip() } else { p }));
        }
        let mut base = if neg { self.recip()? } else { self.clone() };
        let mut acc = Exact::int(1);
        while n > 0 {
            if n & 1 == 1 {
                acc = acc.mul(&base)?;
            }
            n >>= 1;
            if n > 0 {
                base = base.mul(&base)?;
            }
        }
        Ok(acc)
    }

    /// Principal `k`-th root, when it is exact in this field.
    pub fn root(&self, k: u32) -> Result<Exact, EvalError> {
        if self.is_zero() {
            return Ok(Exact::default());
        }
        if self.0.len() != 1 {
            return Err(EvalError::Inexact);
        }
        let (m, c) = self.0.iter().next().ok_or(EvalError::Inexact)?;
        if m.rad != 1 || m.pi % k as i32 != 0 {
            return Err(EvalError::Inexact);
        }
        let pi_part = Exact::mono(Mono {
            pi: m.pi / k as i32,
            rad: 1,
        });
        // Perfect k-th powers stay rational.
        let (p, q) = (c.numer().abs(), c.denom().clone());
        let (rp, rq) = (p.nth_root(k), q.nth_root(k));
        let negative = c.is_negative();
        if num_traits::pow::Pow::pow(&rp, k) == p && num_traits::pow::Pow::pow(&rq, k) == q {
            let r = BigRational::new(rp, rq);
            let base = Exact::rational(r);
            return if negative {
                if k % 2 == 1 {
                    base.neg().mul(&pi_part)
                } else if k == 2 {
                    base.mul(&Exact::i())?.mul(&pi_part)
                } else {
                    Err(EvalError::Inexact)
                }
            } else {
                base.mul(&pi_part)
            };
        }
        if k != 2 {
            return Err(EvalError::Inexact);
        }
        // √(p/q) = √(p·q)/q with the square part taken out.
        let pq = (&p * &q).to_i128().ok_or(EvalError::Inexact)?;
        let (s, f) = square_free_split(pq).ok_or(EvalError::Inexact)?;
        let f = if negative { -f } else { f };
        if f.abs() > MAX_RADICAND as i128 {
            return Err(EvalError::Inexact);
        }
        let coef = BigRational::new(BigInt::from(s), q);
        let mut map = BTreeMap::new();
        map.insert(
            Mono {
                pi: 0,
                rad: f as i64,
            },
            coef,
        );
        Exact(map).mul(&pi_part)
    }
}

impl C64 {
    /// A real number.
    pub fn real(re: f64) -> Self {
        C64 { re, im: 0.0 }
    }

    fn is_finite(&self) -> bool {
        self.re.is_finite() && self.im.is_finite()
    }

    /// Modulus.
    pub fn abs(&self) -> f64 {
        self.re.hypot(self.im)
    }

    fn mul(self, o: C64) -> C64 {
        C64 {
            re: self.re * o.re - self.im * o.im,
            im: self.re * o.im + self.im * o.re,
        }
    }

    fn div(self, o: C64) -> Result<C64, EvalError> {
        let d = o.re * o.re + o.im * o.im;
        if d == 0.0 {
            return Err(EvalError::Undefined);
        }
        Ok(C64 {
            re: (self.re * o.re + self.im * o.im) / d,
            im: (self.im * o.re - self.re * o.im) / d,
        })
    }

    fn ln(self) -> Result<C64, EvalError> {
        let r = self.abs();
        if r == 0.0 {
            return Err(EvalError::Undefined);
        }
        Ok(C64 {
            re: r.ln(),
            im: self.im.atan2(self.re),
        })
    }

    fn exp(self) -> C64 {
        let m = self.re.exp();
        C64 {
            re: m * self.im.cos(),
            im: m * self.im.sin(),
        }
    }

    fn pow(self, e: C64) -> Result<C64, EvalError> {
        if e.im == 0.0 && self.im == 0.0 {
            if self.re >= 0.0 {
                if self.re == 0.0 && e.re < 0.0 {
                    return Err(EvalError::Undefined);
                }
                return Ok(C64::real(self.re.powf(e.re)));
            }
            if e.re.fract() == 0.0 {
                return Ok(C64::real(self.re.powf(e.re)));
            }
        }
        if self.re == 0.0 && self.im == 0.0 {
            return if e.re > 0.0 {
                Ok(C64::real(0.0))
            } else {
                Err(EvalError::Undefined)
            };
        }
        Ok(e.mul(self.ln()?).exp())
    }
}

impl Value {
    /// An exact integer.
    pub fn int(n: i64) -> Self {
        Value::Exact(Exact::int(n))
    }

    /// The value as complex floating point.
    pub fn to_c64(&self) -> C64 {
        match self {
            Value::Exact(e) => e.to_c64(),
            Value::Float(c) => *c,
        }
    }

    fn float(c: C64) -> Result<Value, EvalError> {
        if c.is_finite() {
            Ok(Value::Float(c))
        } else {
            Err(EvalError::Overflow)
        }
    }

    /// Whether the value is zero (exactly, or as a float).
    pub fn is_zero(&self) -> bool {
        match self {
            Value::Exact(e) => e.is_zero(),
            Value::Float(c) => c.re == 0.0 && c.im == 0.0,
        }
    }

    /// The value as a rational, if it is exactly one.
    pub fn as_rational(&self) -> Option<BigRational> {
        match self {
            Value::Exact(e) => e.as_rational(),
            Value::Float(_) => None,
        }
    }

    fn exact_or_float(
        a: &Value,
        b: &Value,
        exact: impl Fn(&Exact, &Exact) -> Result<Exact, EvalError>,
        float: impl Fn(C64, C64) -> Result<C64, EvalError>,
    ) -> Result<Value, EvalError> {
        if let (Value::Exact(x), Value::Exact(y)) = (a, b) {
            match exact(x, y) {
                Ok(v) => return Ok(Value::Exact(v)),
                Err(EvalError::Inexact) => {}
                Err(e) => return Err(e),
            }
        }
        Value::float(float(a.to_c64(), b.to_c64())?)
    }

    /// Sum.
    pub fn add(&self, o: &Value) -> Result<Value, EvalError> {
        Self::exact_or_float(
            self,
            o,
            |x, y| x.add(y),
            |x, y| {
                Ok(C64 {
                    re: x.re + y.re,
                    im: x.im + y.im,
                })
            },
        )
    }

    /// Negation.
    pub fn neg(&self) -> Value {
        match self {
            Value::Exact(e) => Value::Exact(e.neg()),
            Value::Float(c) => Value::Float(C64 {
                re: -c.re,
                im: -c.im,
            }),
        }
    }

    /// Product.
    pub fn mul(&self, o: &Value) -> Result<Value, EvalError> {
        Self::exact_or_float(self, o, |x, y| x.mul(y), |x, y| Ok(x.mul(y)))
    }

    /// Quotient.
    pub fn div(&self, o: &Value) -> Result<Value, EvalError> {
        if o.is_zero() {
            return Err(EvalError::Undefined);
        }
        Self::exact_or_float(self, o, |x, y| x.mul(&y.recip()?), |x, y| x.div(y))
    }

    /// Power; exact for integer exponents and for rational exponents whose root is
    /// exact (`8^{2/3}`, `2^{1/2}`).
    pub fn pow(&self, e: &Value) -> Result<Value, EvalError> {
        if let (Value::Exact(b), Some(r)) = (self, e.as_rational()) {
            let den = r.denom().to_u32().filter(|d| *d <= 64);
            if let Some(d) = den {
                let attempt = b.root(d).and_then(|root| root.powi(r.numer()));
                match attempt {
                    Ok(v) => return Ok(Value::Exact(v)),
                    Err(EvalError::Inexact) => {}
                    Err(err) => return Err(err),
                }
            }
        }
        Value::float(self.to_c64().pow(e.to_c64())?)
    }

    /// Principal `k`-th root (`k ≥ 2`); real cube roots of negative reals stay real.
    pub fn root(&self, k: u32) -> Result<Value, EvalError> {
        if let Value::Exact(b) = self {
            match b.root(k) {
                Ok(v) => return Ok(Value::Exact(v)),
                Err(EvalError::Inexact) => {}
                Err(err) => return Err(err),
            }
        }
        let c = self.to_c64();
        if c.im == 0.0 && c.re < 0.0 && k % 2 == 1 {
            return Value::float(C64::real(-(-c.re).powf(1.0 / k as f64)));
        }
        Value::float(c.pow(C64::real(1.0 / k as f64))?)
    }

    /// A real function applied in floating point (trigonometric, logarithms, ...).
    pub fn apply_real(&self, f: impl Fn(f64) -> f64) -> Result<Value, EvalError> {
        let c = self.to_c64();
        if c.im.abs() > 1e-12 * c.re.abs().max(1.0) {
            return Err(EvalError::NotNumeric);
        }
        let v = f(c.re);
        if v.is_nan() {
            return Err(EvalError::Undefined);
        }
        Value::float(C64::real(v))
    }

    /// `|x|`, exact for real rationals and exact reals of known sign.
    pub fn abs(&self) -> Result<Value, EvalError> {
        if let Value::Exact(e) = self {
            if let Some(r) = e.as_rational() {
                return Ok(Value::Exact(Exact::rational(r.abs())));
            }
            let c = e.to_c64();
            if c.im == 0.0 && e.0.keys().all(|m| m.rad > 0) && c.re != 0.0 {
                return Ok(if c.re < 0.0 { self.neg() } else { self.clone() });
            }
        }
        Value::float(C64::real(self.to_c64().abs()))
    }
}

/// Most decimal places a rounded comparison uses (an `f64` holds about 15 significant
/// digits).
pub const MAX_DECIMAL_PLACES: u32 = 15;

/// Whether `a` and `b` agree when both are rounded (half away from zero) to `places`
/// decimal places, real and imaginary parts alike: `1/3` and `0.333` at 3 places, not
/// at 4. Rationals round exactly, other values in floating point; `places` above
/// [`MAX_DECIMAL_PLACES`] counts as that.
pub fn equal_rounded(a: &Value, b: &Value, places: u32) -> bool {
    let places = places.min(MAX_DECIMAL_PLACES);
    if let (Some(x), Some(y)) = (a.as_rational(), b.as_rational()) {
        let scale = BigRational::from_integer(BigInt::from(10).pow(places));
        return (x * &scale).round() == (y * &scale).round();
    }
    let (x, y) = (a.to_c64(), b.to_c64());
    let scale = 10f64.powi(places as i32);
    let round = |t: f64| (t * scale).round();
    [x.re, x.im, y.re, y.im].iter().all(|t| t.is_finite())
        && round(x.re) == round(y.re)
        && round(x.im) == round(y.im)
}

/// `a` and `b` are equal: exactly when both are exact and `tolerant` is false,
/// otherwise within relative tolerance `rel_tol` (complex modulus).
pub fn values_equal(a: &Value, b: &Value, tolerant: bool, rel_tol: f64) -> bool {
    if let (Value::Exact(x), Value::Exact(y)) = (a, b) {
        if x == y {
            return true;
        }
        if !tolerant {
            return false;
        }
    }
    let (x, y) = (a.to_c64(), b.to_c64());
    let d = C64 {
        re: x.re - y.re,
        im: x.im - y.im,
    }
    .abs();
    let scale = x.abs().max(y.abs());
    if d <= rel_tol * scale {
        return true;
    }
    // Values computed by floating-point functions (sin(π) = 1.2e-16) may miss an exact
    // zero; this floor applies only when no decimal literal was written.
    !tolerant && d <= 1e-12 && (matches!(a, Value::Float(_)) || matches!(b, Value::Float(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(n: i64, d: i64) -> Exact {
        Exact::rational(BigRational::new(n.into(), d.into()))
    }

    #[test]
    fn radicals_are_canonical() {
        // √8 = 2√2
        let r8 = q(8, 1).root(2).unwrap();
        let r2 = q(2, 1).root(2).unwrap();
        assert_eq!(r8, r2.mul(&q(2, 1)).unwrap());
        // √2·√3 = √6 and √-4 = 2i
        let r3 = q(3, 1).root(2).unwrap();
        assert_eq!(r2.mul(&r3).unwrap(), q(6, 1).root(2).unwrap());
        assert_eq!(q(-4, 1).root(2).unwrap(), Exact::i().mul(&q(2, 1)).unwrap());
    }

    #[test]
    fn rationalises_denominators() {
        // 1/(1+√2) = √2 - 1
        let r2 = q(2, 1).root(2).unwrap();
        let d = q(1, 1).add(&r2).unwrap();
        assert_eq!(d.recip().unwrap(), r2.add(&q(-1, 1)).unwrap());
        // 1/(1+i) = (1-i)/2
        let z = q(1, 1).add(&Exact::i()).unwrap();
        let want = q(1, 2).add(&Exact::i().mul(&q(-1, 2)).unwrap()).unwrap();
        assert_eq!(z.recip().unwrap(), want);
    }

    #[test]
    fn caps_fall_back_to_float() {
        let two = Value::int(2);
        let big = Value::Exact(q(10, 9)).pow(&Value::int(2100)).unwrap();
        assert!(matches!(big, Value::Float(_)));
        assert_eq!(two.pow(&Value::int(100_000)), Err(EvalError::Overflow));
        assert_eq!(two.pow(&Value::int(10)).unwrap(), Value::Exact(q(1024, 1)));
        assert_eq!(
            Value::Exact(q(8, 27)).pow(&Value::Exact(q(2, 3))).unwrap(),
            Value::Exact(q(4, 9))
        );
    }
}
