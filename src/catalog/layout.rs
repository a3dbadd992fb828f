//! Seat layouts: a screen is described by rows (`{label: "A", seats: 12, category: "standard"}`)
//! and stored as one row per seat. Pure code, no I/O.

use serde::{Deserialize, Serialize};

use crate::error::FieldError;
use crate::validate::{self, Errors};

/// Most rows a screen may have.
pub const MAX_ROWS: usize = 200;
/// Most seats one row may have.
pub const MAX_SEATS_PER_ROW: u32 = 200;
/// Most seats a screen may have.
pub const MAX_SEATS: u32 = 20_000;

/// A row as an admin describes it.
#[derive(Clone, Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RowSpec {
    /// Row label printed on the ticket: 1 to 4 of A-Z and 0-9.
    #[schema(example = "A", pattern = "^[A-Z0-9]{1,4}$")]
    pub label: String,
    /// Number of seats in the row (numbered from 1).
    #[schema(example = 12, minimum = 1, maximum = 200)]
    #[serde(deserialize_with = "crate::validate::lenient::int")]
    pub seats: u32,
    /// Seat category; the showtime's prices name each category.
    #[schema(example = "standard", pattern = "^[a-z][a-z0-9_]{0,31}$")]
    pub category: String,
}

/// One generated seat (ids are given when stored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeatSpec {
    pub row_label: String,
    pub row_index: i32,
    pub number: i32,
    pub category: String,
}

/// Checks the rows and expands them into seats, in display order.
pub fn generate(rows: &[RowSpec]) -> Result<Vec<SeatSpec>, Vec<FieldError>> {
    let mut errors = Errors::default();
    if rows.is_empty() || rows.len() > MAX_ROWS {
        errors.push("rows", format!("must have 1 to {MAX_ROWS} rows"));
    }
    let mut labels = std::collections::HashSet::new();
    let mut total: u32 = 0;
    let mut seats = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let label = row.label.trim().to_owned();
        let label_ok =
            (1..=4).contains(&label.len()) && label.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if !label_ok {
            errors.push(format!("rows[{i}].label"), "must be 1 to 4 of A-Z and 0-9");
        } else if !labels.insert(label.clone()) {
            errors.push(format!("rows[{i}].label"), format!("row {label} appears twice"));
        }
        if row.seats == 0 || row.seats > MAX_SEATS_PER_ROW {
            errors.push(format!("rows[{i}].seats"), format!("must be 1 to {MAX_SEATS_PER_ROW}"));
        }
        let category = errors.check(validate::category(&format!("rows[{i}].category"), &row.category));
        total = total.saturating_add(row.seats);
        if let (Some(category), true) = (category, errors.is_empty()) {
            seats.extend((1..=row.seats).map(|n| SeatSpec {
                row_label: label.clone(),
                row_index: i as i32,
                number: n as i32,
                category: category.clone(),
            }));
        }
    }
    if total > MAX_SEATS {
        errors.push("rows", format!("a screen has at most {MAX_SEATS} seats"));
    }
    match errors.finish() {
        Ok(()) => Ok(seats),
        Err(crate::error::ApiError::Validation(e)) => Err(e),
        Err(_) => unreachable!("Errors::finish only makes validation errors"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(label: &str, seats: u32, category: &str) -> RowSpec {
        RowSpec { label: label.into(), seats, category: category.into() }
    }

    #[test]
    fn rows_expand_to_numbered_seats_in_order() {
        let seats = generate(&[row("A", 3, "standard"), row("B", 2, "vip")]).expect("valid");
        let names: Vec<_> = seats.iter().map(|s| format!("{}{}:{}", s.row_label, s.number, s.category)).collect();
        assert_eq!(names, ["A1:standard", "A2:standard", "A3:standard", "B1:vip", "B2:vip"]);
        assert_eq!(seats[4].row_index, 1);
    }

    #[test]
    fn bad_rows_are_named() {
        let errors = generate(&[row("A", 0, "standard"), row("A", 2, "Vip"), row("a!", 1, "x")]).expect_err("invalid");
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["rows[0].seats", "rows[1].label", "rows[1].category", "rows[2].label"]);
    }

    #[test]
    fn empty_and_oversized_layouts_are_refused() {
        assert!(generate(&[]).is_err());
        // A stadium of 20,000 seats is the most; one more row of 200 is refused by the total.
        let stadium: Vec<_> = (0..100).map(|i| row(&format!("R{i}"), 200, "standard")).collect();
        assert_eq!(generate(&stadium).expect("20,000 seats").len(), 20_000);
        let big: Vec<_> = (0..101).map(|i| row(&format!("R{i}"), 200, "standard")).collect();
        let fields: Vec<_> = generate(&big).expect_err("too big").into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["rows"]);
        let many: Vec<_> = (0..201).map(|i| row(&format!("R{i}"), 1, "standard")).collect();
        assert!(generate(&many).is_err());
    }
}
