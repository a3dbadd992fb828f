//! Page-number paging for list endpoints: `?page=1&per_page=20`, answers say the total.

use serde::{Deserialize, Serialize};

use crate::error::{ApiError, FieldError};

/// Largest page a client may ask for.
pub const MAX_PER_PAGE: u32 = 100;
const DEFAULT_PER_PAGE: u32 = 20;

/// The paging part of a list query (flattened into each endpoint's query type).
#[derive(Clone, Copy, Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct PageQuery {
    /// 1-based page number (default 1).
    #[param(minimum = 1, maximum = 1000000)]
    pub page: Option<u32>,
    /// Items per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub per_page: Option<u32>,
}

/// A checked page request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Paging {
    pub page: u32,
    pub per_page: u32,
}

impl Paging {
    pub fn limit(&self) -> i64 {
        i64::from(self.per_page)
    }
    pub fn offset(&self) -> i64 {
        i64::from(self.page - 1) * i64::from(self.per_page)
    }
}

impl TryFrom<PageQuery> for Paging {
    type Error = ApiError;
    fn try_from(q: PageQuery) -> Result<Self, ApiError> {
        let page = q.page.unwrap_or(1);
        let per_page = q.per_page.unwrap_or(DEFAULT_PER_PAGE);
        let mut errors = Vec::new();
        if page == 0 || page > 1_000_000 {
            errors.push(FieldError::new("page", "must be between 1 and 1000000"));
        }
        if per_page == 0 || per_page > MAX_PER_PAGE {
            errors.push(FieldError::new("per_page", format!("must be between 1 and {MAX_PER_PAGE}")));
        }
        if errors.is_empty() { Ok(Self { page, per_page }) } else { Err(ApiError::Validation(errors)) }
    }
}

/// One page of a list.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub page: u32,
    pub per_page: u32,
    /// Number of items over all pages.
    pub total: i64,
}

impl<T> Page<T> {
    pub fn new(items: Vec<T>, paging: Paging, total: i64) -> Self {
        Self { items, page: paging.page, per_page: paging.per_page, total }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paging_defaults_and_bounds() {
        let p = Paging::try_from(PageQuery::default()).expect("defaults");
        assert_eq!((p.page, p.per_page, p.offset()), (1, 20, 0));
        let p = Paging::try_from(PageQuery { page: Some(3), per_page: Some(10) }).expect("valid");
        assert_eq!(p.offset(), 20);
        assert!(Paging::try_from(PageQuery { page: Some(0), per_page: None }).is_err());
        assert!(Paging::try_from(PageQuery { page: None, per_page: Some(101) }).is_err());
    }
}
