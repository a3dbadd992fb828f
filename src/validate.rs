//! Small checks shared by request types: bounded text, currency codes, category names.

use crate::error::FieldError;

/// Trimmed text of `min..=max` characters without control characters (newlines and tabs are
/// allowed only when `multiline`).
pub fn text(field: &str, raw: &str, min: usize, max: usize, multiline: bool) -> Result<String, FieldError> {
    let value = raw.trim();
    let n = value.chars().count();
    if n < min || n > max {
        return Err(FieldError::new(field, format!("must be {min} to {max} characters")));
    }
    let bad = value.chars().any(|c| c.is_control() && !(multiline && matches!(c, '\n' | '\t' | '\r')));
    if bad {
        return Err(FieldError::new(field, "must not contain control characters"));
    }
    Ok(value.to_owned())
}

/// An ISO 4217 style code: three upper-case ASCII letters.
pub fn currency(field: &str, raw: &str) -> Result<String, FieldError> {
    if raw.len() == 3 && raw.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(raw.to_owned())
    } else {
        Err(FieldError::new(field, "must be a three-letter upper-case currency code, e.g. EUR"))
    }
}

/// A seat category name: lower-case letter, then up to 31 of `[a-z0-9_]`.
pub fn category(field: &str, raw: &str) -> Result<String, FieldError> {
    let mut chars = raw.chars();
    let ok = raw.len() <= 32
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(raw.to_owned())
    } else {
        Err(FieldError::new(field, "must be 1 to 32 of a-z, 0-9 and _, starting with a letter"))
    }
}

// Request types document what `text` accepts as JSON Schema patterns: a single line has at
// least one visible character and no control characters; multi-line text also allows tabs and
// newlines.

/// Serde helpers that accept an integer written as a float with no fraction (`90.0`), which
/// JSON Schema counts as an integer, and refuse anything else that is not an integer.
pub mod lenient {
    use serde::{Deserialize, Deserializer, de::Error};

    fn integral<'de, D: Deserializer<'de>, T: TryFrom<i64>>(n: serde_json::Number) -> Result<T, D::Error> {
        let value = match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i,
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => f as i64,
            _ => return Err(D::Error::custom(format!("expected an integer, got {n}"))),
        };
        T::try_from(value).map_err(|_| D::Error::custom(format!("{value} is out of range")))
    }

    /// An integer.
    pub fn int<'de, D: Deserializer<'de>, T: TryFrom<i64>>(d: D) -> Result<T, D::Error> {
        integral::<D, T>(serde_json::Number::deserialize(d)?)
    }

    /// An optional integer (`null` or absent is `None`).
    pub fn opt_int<'de, D: Deserializer<'de>, T: TryFrom<i64>>(d: D) -> Result<Option<T>, D::Error> {
        Option::<serde_json::Number>::deserialize(d)?.map(integral::<D, T>).transpose()
    }

    /// A map of integers.
    pub fn int_map<'de, D: Deserializer<'de>>(d: D) -> Result<std::collections::BTreeMap<String, i64>, D::Error> {
        std::collections::BTreeMap::<String, serde_json::Number>::deserialize(d)?
            .into_iter()
            .map(|(k, v)| Ok((k, integral::<D, i64>(v)?)))
            .collect()
    }

    /// An optional map of integers.
    pub fn opt_int_map<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<std::collections::BTreeMap<String, i64>>, D::Error> {
        let Some(map) = Option::<std::collections::BTreeMap<String, serde_json::Number>>::deserialize(d)? else {
            return Ok(None);
        };
        map.into_iter().map(|(k, v)| Ok((k, integral::<D, i64>(v)?))).collect::<Result<_, _>>().map(Some)
    }
}

/// Collects field errors while a request is converted; `finish` turns them into one 422.
#[derive(Debug, Default)]
pub struct Errors(Vec<FieldError>);

impl Errors {
    /// Keeps the value, or records the error and returns `None`.
    pub fn check<T>(&mut self, result: Result<T, FieldError>) -> Option<T> {
        result.map_err(|e| self.0.push(e)).ok()
    }

    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(())` when nothing was recorded, else the 422.
    pub fn finish(self) -> Result<(), crate::error::ApiError> {
        if self.0.is_empty() { Ok(()) } else { Err(crate::error::ApiError::Validation(self.0)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_trimmed_and_bounded() {
        assert_eq!(text("t", "  Alien ", 1, 10, false).expect("ok"), "Alien");
        assert!(text("t", "", 1, 10, false).is_err());
        assert!(text("t", "a\nb", 1, 10, false).is_err());
        assert!(text("t", "a\nb", 1, 10, true).is_ok());
        assert!(text("t", "ééééé", 1, 4, false).is_err());
    }

    #[test]
    fn integers_may_be_written_as_whole_floats() {
        #[derive(serde::Deserialize)]
        struct T {
            #[serde(deserialize_with = "lenient::int")]
            n: i32,
        }
        assert_eq!(serde_json::from_str::<T>(r#"{"n": 90.0}"#).expect("whole float").n, 90);
        assert_eq!(serde_json::from_str::<T>(r#"{"n": 90}"#).expect("integer").n, 90);
        assert!(serde_json::from_str::<T>(r#"{"n": 90.5}"#).is_err());
        assert!(serde_json::from_str::<T>(r#"{"n": 1e12}"#).is_err(), "out of i32 range");
    }

    #[test]
    fn currencies_and_categories() {
        assert!(currency("c", "EUR").is_ok());
        assert!(currency("c", "eur").is_err());
        assert!(currency("c", "EURO").is_err());
        assert!(category("c", "vip_2").is_ok());
        assert!(category("c", "2vip").is_err());
        assert!(category("c", "VIP").is_err());
        assert!(category("c", "").is_err());
    }
}
