//! Order-preserving key encodings (the byte layout is specified in `docs/storage.md`).
//!
//! Every key is a concatenation of components, each of which sorts, byte by byte, the
//! way its value sorts, and none of which is a prefix of another of the same kind:
//!
//! - strings: the UTF-8 bytes with every `0x00` written as `0x00 0xFF`, then the
//!   terminator `0x00 0x01`. Byte order equals `str` order, and all keys that start with
//!   one string component lie in `[enc(s), enc(s) with its last byte + 1)`;
//! - times (`i64` nanoseconds): 8 bytes big-endian with the sign bit flipped, so that
//!   negative times sort first;
//! - sequence numbers and counters: `u64`/`u32` big-endian.

use crate::error::{Error, Result};

const ESCAPE: u8 = 0xFF;
const TERMINATOR: u8 = 0x01;

/// Appends a string component.
pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        out.push(b);
        if b == 0 {
            out.push(ESCAPE);
        }
    }
    out.extend_from_slice(&[0, TERMINATOR]);
}

/// Appends a time component.
pub(crate) fn put_time(out: &mut Vec<u8>, nanos: i64) {
    out.extend_from_slice(&time_bytes(nanos));
}

/// The 8 bytes of a time component.
pub(crate) fn time_bytes(nanos: i64) -> [u8; 8] {
    ((nanos as u64) ^ (1 << 63)).to_be_bytes()
}

/// Appends a `u64` component.
pub(crate) fn put_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(&n.to_be_bytes());
}

/// Appends a `u32` component.
pub(crate) fn put_u32(out: &mut Vec<u8>, n: u32) {
    out.extend_from_slice(&n.to_be_bytes());
}

/// The exclusive upper bound of every key that starts with `prefix`, where `prefix` ends
/// with a string component (so its last byte is the terminator `0x01`).
pub(crate) fn after_str_prefix(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    if let Some(last) = end.last_mut() {
        *last = TERMINATOR + 1;
    }
    end
}

/// Reads components back from a key, front to back.
#[derive(Debug)]
pub(crate) struct KeyReader<'a> {
    rest: &'a [u8],
    what: &'static str,
}

impl<'a> KeyReader<'a> {
    pub(crate) fn new(key: &'a [u8], what: &'static str) -> KeyReader<'a> {
        KeyReader { rest: key, what }
    }

    fn corrupt(&self, reason: &str) -> Error {
        Error::corrupt(format!("{} key", self.what), reason)
    }

    /// Reads the next string component.
    pub(crate) fn str(&mut self) -> Result<String> {
        let mut out = Vec::new();
        let mut i = 0;
        loop {
            let Some(&b) = self.rest.get(i) else {
                return Err(self.corrupt("unterminated string component"));
            };
            if b == 0 {
                match self.rest.get(i + 1) {
                    Some(&ESCAPE) => {
                        out.push(0);
                        i += 2;
                    }
                    Some(&TERMINATOR) => {
                        self.rest = &self.rest[i + 2..];
                        break;
                    }
                    _ => return Err(self.corrupt("bad escape in string component")),
                }
            } else {
                out.push(b);
                i += 1;
            }
        }
        String::from_utf8(out).map_err(|_| self.corrupt("string component is not UTF-8"))
    }

    /// Skips a string component, returning its encoded bytes (terminator included).
    pub(crate) fn skip_str(&mut self) -> Result<&'a [u8]> {
        let mut i = 0;
        loop {
            match (self.rest.get(i), self.rest.get(i + 1)) {
                (Some(0), Some(&TERMINATOR)) => {
                    let (s, rest) = self.rest.split_at(i + 2);
                    self.rest = rest;
                    return Ok(s);
                }
                (Some(0), Some(&ESCAPE)) => i += 2,
                (Some(0), _) | (None, _) => {
                    return Err(self.corrupt("unterminated string component"));
                }
                (Some(_), _) => i += 1,
            }
        }
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N]> {
        let Some((head, rest)) = self.rest.split_first_chunk::<N>() else {
            return Err(self.corrupt("key is too short"));
        };
        self.rest = rest;
        Ok(*head)
    }

    pub(crate) fn time(&mut self) -> Result<i64> {
        Ok((u64::from_be_bytes(self.fixed::<8>()?) ^ (1 << 63)) as i64)
    }

    pub(crate) fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.fixed::<8>()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.fixed::<4>()?))
    }

    /// Fails unless every byte was read.
    pub(crate) fn end(&self) -> Result<()> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(self.corrupt("trailing bytes"))
        }
    }
}

/// Decodes an 8-byte time value (same encoding as the key component).
pub(crate) fn time_from_bytes(bytes: &[u8], what: &str) -> Result<i64> {
    let arr: [u8; 8] = bytes
        .try_into()
        .map_err(|_| Error::corrupt(what.to_string(), "expected 8 bytes"))?;
    Ok((u64::from_be_bytes(arr) ^ (1 << 63)) as i64)
}

/// Decodes an 8-byte big-endian `u64` value.
pub(crate) fn u64_from_bytes(bytes: &[u8], what: &str) -> Result<u64> {
    let arr: [u8; 8] = bytes
        .try_into()
        .map_err(|_| Error::corrupt(what.to_string(), "expected 8 bytes"))?;
    Ok(u64::from_be_bytes(arr))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn enc(s: &str, t: i64) -> Vec<u8> {
        let mut v = Vec::new();
        put_str(&mut v, s);
        put_time(&mut v, t);
        v
    }

    #[test]
    fn encoding_preserves_order_of_strings_then_times() {
        let mut items = vec![
            ("", 0),
            ("a", i64::MIN),
            ("a", -1),
            ("a", 0),
            ("a", 1),
            ("a", i64::MAX),
            ("a\0", -5),
            ("a\0b", 3),
            ("a\u{1}", 0),
            ("ab", -100),
            ("b", 0),
            ("é", 0),
        ];
        let mut shuffled = items.clone();
        shuffled.reverse();
        shuffled.sort_by_key(|(s, t)| enc(s, *t));
        items.sort();
        assert_eq!(shuffled, items);
    }

    #[test]
    fn components_round_trip_and_prefix_bounds_hold() {
        let mut k = Vec::new();
        put_str(&mut k, "x\0y");
        put_str(&mut k, "");
        put_time(&mut k, -42);
        put_u64(&mut k, 7);
        put_u32(&mut k, 9);
        let mut r = KeyReader::new(&k, "test");
        assert_eq!(r.str().unwrap(), "x\0y");
        assert_eq!(r.skip_str().unwrap(), &[0, 1]);
        assert_eq!(r.time().unwrap(), -42);
        assert_eq!(r.u64().unwrap(), 7);
        assert_eq!(r.u32().unwrap(), 9);
        r.end().unwrap();

        let mut p = Vec::new();
        put_str(&mut p, "a");
        let end = after_str_prefix(&p);
        for longer in ["a\0", "ab", "a\u{7f}", "aé"] {
            let mut q = Vec::new();
            put_str(&mut q, longer);
            assert!(
                q.as_slice() >= end.as_slice(),
                "{longer:?} escapes the bound"
            );
        }
        let mut inside = p.clone();
        put_time(&mut inside, i64::MAX);
        assert!(inside < end);
    }

    #[test]
    fn damaged_keys_are_errors_not_panics() {
        for bad in [&b"abc"[..], &[0, 7], &[0], &[0xff, 0xfe, 0, 1, 1, 2]] {
            let mut r = KeyReader::new(bad, "test");
            let res = r.str().and_then(|_| r.time());
            assert!(res.is_err(), "{bad:?}");
        }
    }
}
