//! Number text as XAPI writes it: xapi-rrd's `f_to_s` (`%0.4f`, `%0.5g`, `%0.15g` with its
//! `0.0` / `NaN` / `Infinity` special cases) and XML-RPC's `%.16g` doubles, reproducing C
//! `printf` rounding without calling into C.

use std::fmt::Write as _;

/// How one generation of xapi-rrd prints a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NumStyle {
    /// `%0.4f` (xapi-rrd ≤ 1.9, XCP-ng 8.2).
    Fixed4,
    /// `%0.5g` (xapi-rrd 1.10 up to xapi 25.2).
    Sig5,
    /// `%0.15g` (xapi ≥ 25.3).
    Sig15,
}

/// Appends `v` exactly as xapi-rrd's `Utils.f_to_s` would print it.
pub(super) fn push_rrd_value(out: &mut String, v: f64, style: NumStyle) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "Infinity" } else { "-Infinity" });
    } else if v == 0.0 {
        // f_to_s special-cases zero (both signs) before printf.
        out.push_str("0.0");
    } else {
        match style {
            // Rust's fixed-precision formatting is exact and rounds ties to even, like glibc.
            NumStyle::Fixed4 => {
                let _ = write!(out, "{v:.4}");
            }
            NumStyle::Sig5 => push_g(out, v, 5),
            NumStyle::Sig15 => push_g(out, v, 15),
        }
    }
}

/// Appends `v` as C `%.{p}g` would (`p` in 1..=17); `v` must be finite.
pub(super) fn push_g(out: &mut String, v: f64, p: usize) {
    debug_assert!(v.is_finite() && (1..=17).contains(&p));
    if v == 0.0 {
        out.push_str(if v.is_sign_negative() { "-0" } else { "0" });
        return;
    }
    let a = v.abs();
    let mut digits = Digits::default();
    // Fast path: when the shortest round-trip representation has at most `p` ≤ 15 significant
    // digits, rounding the exact binary value to `p` digits yields exactly those digits: a
    // 15-digit decimal grid is several ulps coarse, so no other grid point is nearer. (Not
    // true at 16–17 digits, where the grid can be finer than an ulp.)
    let mut ryu_buf = ryu::Buffer::new();
    digits.parse(ryu_buf.format_finite(a));
    if digits.len > p || p > 15 {
        // Slow path: Rust's `{:.N e}` rounds the exact value correctly, ties to even.
        let mut tmp = StackStr::default();
        let _ = write!(tmp, "{:.*e}", p - 1, a);
        digits.parse(tmp.as_str());
    }
    if v < 0.0 {
        out.push('-');
    }
    let exp = digits.exp;
    let d = &digits.buf[..digits.len];
    if exp < -4 || exp >= p as i32 {
        out.push(char::from(d[0]));
        if d.len() > 1 {
            out.push('.');
            push_ascii(out, &d[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        let e = exp.unsigned_abs();
        if e < 10 {
            out.push('0');
        }
        let _ = write!(out, "{e}");
    } else if exp >= 0 {
        let int_len = exp as usize + 1;
        if d.len() <= int_len {
            push_ascii(out, d);
            for _ in d.len()..int_len {
                out.push('0');
            }
        } else {
            push_ascii(out, &d[..int_len]);
            out.push('.');
            push_ascii(out, &d[int_len..]);
        }
    } else {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        push_ascii(out, d);
    }
}

fn push_ascii(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        out.push(char::from(*b));
    }
}

/// Significant decimal digits of a positive number, trailing zeros removed, with the decimal
/// exponent of the first digit (scientific-notation exponent).
struct Digits {
    buf: [u8; 40],
    len: usize,
    exp: i32,
}

impl Default for Digits {
    fn default() -> Self {
        Digits {
            buf: [0; 40],
            len: 0,
            exp: 0,
        }
    }
}

impl Digits {
    /// Reads `123.45`, `0.00012`, `1e16`, `1.2345e-7` or `1.50000e+00`-like text.
    fn parse(&mut self, s: &str) {
        self.len = 0;
        let mut int_digits: i32 = 0;
        let mut seen_point = false;
        let mut leading_zeros: i32 = 0;
        let mut exp_part: i32 = 0;
        let bytes = s.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let c = bytes[i];
            match c {
                b'0'..=b'9' => {
                    if !seen_point {
                        int_digits += 1;
                    }
                    if self.len == 0 && c == b'0' {
                        leading_zeros += 1;
                    } else if self.len < self.buf.len() {
                        self.buf[self.len] = c;
                        self.len += 1;
                    }
                }
                b'.' => seen_point = true,
                b'e' | b'E' => {
                    exp_part = s[i + 1..].trim_start_matches('+').parse().unwrap_or(0);
                    break;
                }
                _ => {}
            }
            i += 1;
        }
        while self.len > 1 && self.buf[self.len - 1] == b'0' {
            self.len -= 1;
        }
        if self.len == 0 {
            self.buf[0] = b'0';
            self.len = 1;
            self.exp = 0;
        } else {
            self.exp = int_digits - 1 - leading_zeros + exp_part;
        }
    }
}

/// A small fixed buffer implementing `fmt::Write`, to avoid allocating on the slow path.
struct StackStr {
    buf: [u8; 64],
    len: usize,
}

impl Default for StackStr {
    fn default() -> Self {
        StackStr {
            buf: [0; 64],
            len: 0,
        }
    }
}

impl StackStr {
    fn as_str(&self) -> &str {
        // Only ASCII from float formatting is ever written here.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("0")
    }
}

impl std::fmt::Write for StackStr {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(std::fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Rounds to `dp` decimal places (`dp` ≥ 0), or to 15 significant digits when `dp` < 0, so
/// that generated values have short decimal forms (which keeps formatting on the fast path).
pub(super) fn quantize(x: f64, dp: i32) -> f64 {
    if !x.is_finite() || x == 0.0 {
        return x;
    }
    if dp >= 0 {
        let p = POW10[dp.min(22) as usize];
        (x * p).round() / p
    } else {
        let e = x.abs().log10().floor() as i32;
        let shift = 14 - e;
        if (0..=22).contains(&shift) {
            let p = POW10[shift as usize];
            (x * p).round() / p
        } else if (-22..0).contains(&shift) {
            let p = POW10[(-shift) as usize];
            (x / p).round() * p
        } else {
            x
        }
    }
}

const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

#[cfg(test)]
mod tests {
    use super::*;

    fn g(v: f64, p: usize) -> String {
        let mut s = String::new();
        push_g(&mut s, v, p);
        s
    }

    fn rrd(v: f64, style: NumStyle) -> String {
        let mut s = String::new();
        push_rrd_value(&mut s, v, style);
        s
    }

    #[test]
    fn percent_g_matches_c() {
        // Expected strings are what glibc printf("%.Ng") prints.
        let cases: &[(f64, usize, &str)] = &[
            (16777216.0, 15, "16777216"),
            (16777216.0, 5, "1.6777e+07"),
            (0.0412345678901234, 15, "0.0412345678901234"),
            (0.0412345678901234, 5, "0.041235"),
            (1.5e-5, 15, "1.5e-05"),
            (0.0001, 15, "0.0001"),
            (0.00001234, 5, "1.234e-05"),
            (123456.0, 5, "1.2346e+05"),
            (12345.0, 5, "12345"),
            (99999.5, 5, "1e+05"),
            (0.1, 17, "0.10000000000000001"),
            (1.0 / 3.0, 15, "0.333333333333333"),
            (2.0 / 3.0, 15, "0.666666666666667"),
            (1e22, 15, "1e+22"),
            (1.25e100, 15, "1.25e+100"),
            (-2.5, 15, "-2.5"),
            (1766.7, 15, "1766.7"),
            (1.0, 16, "1"),
            (0.25, 16, "0.25"),
            (4294967296.0, 15, "4294967296"),
            (0.125, 2, "0.12"),
            (0.375, 2, "0.38"),
        ];
        for (v, p, want) in cases {
            assert_eq!(g(*v, *p), *want, "%.{p}g of {v:e}");
        }
    }

    #[test]
    fn rrd_special_cases() {
        for style in [NumStyle::Fixed4, NumStyle::Sig5, NumStyle::Sig15] {
            assert_eq!(rrd(0.0, style), "0.0");
            assert_eq!(rrd(-0.0, style), "0.0");
            assert_eq!(rrd(f64::NAN, style), "NaN");
            assert_eq!(rrd(f64::INFINITY, style), "Infinity");
            assert_eq!(rrd(f64::NEG_INFINITY, style), "-Infinity");
        }
        assert_eq!(rrd(16777216.0, NumStyle::Fixed4), "16777216.0000");
        assert_eq!(rrd(0.0412345, NumStyle::Fixed4), "0.0412");
        assert_eq!(rrd(0.00001, NumStyle::Fixed4), "0.0000");
        assert_eq!(rrd(16777216.0, NumStyle::Sig5), "1.6777e+07");
        assert_eq!(rrd(16777216.0, NumStyle::Sig15), "16777216");
    }

    #[test]
    fn quantize_keeps_values_short() {
        let mut r = crate::rng::SplitMix::new(3);
        for _ in 0..2000 {
            let x = r.unit() * 10f64.powi(r.range_i64(-8, 9) as i32);
            let q = quantize(x, -1);
            let mut b = ryu::Buffer::new();
            let mut d = Digits::default();
            d.parse(b.format_finite(q));
            assert!(d.len <= 15 || x < 1e-7, "{x:e} → {q:e}");
        }
        assert_eq!(quantize(1766.74, 1), 1766.7);
    }
}
