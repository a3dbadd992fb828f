//! In-process cache of showtime layouts. A showtime's screen never changes and a screen's seats
//! never change, so an entry never goes stale: the hold path validates seat ids without I/O.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use sqlx::{FromRow, PgPool};
use uuid::Uuid;

use crate::catalog::model::Seat;
use crate::error::ApiError;

/// Entries kept at most; the cache is simply emptied when full (layouts reload cheaply).
const CAPACITY: usize = 4096;

/// The seats of one showtime's screen, in display order.
#[derive(Debug)]
pub struct Layout {
    pub screen_id: Uuid,
    pub seats: Vec<Seat>,
    index: HashMap<Uuid, usize>,
}

impl Layout {
    pub fn new(screen_id: Uuid, seats: Vec<Seat>) -> Self {
        let index = seats.iter().enumerate().map(|(i, s)| (s.id, i)).collect();
        Self { screen_id, seats, index }
    }

    pub fn seat(&self, id: Uuid) -> Option<&Seat> {
        self.index.get(&id).map(|&i| &self.seats[i])
    }
}

/// Layouts by showtime id.
#[derive(Debug, Default)]
pub struct LayoutCache {
    entries: RwLock<HashMap<Uuid, Arc<Layout>>>,
}

#[derive(FromRow)]
struct SeatRow {
    screen_id: Uuid,
    id: Uuid,
    row: String,
    number: i32,
    category: String,
}

impl LayoutCache {
    /// The layout of a showtime; 404 when the showtime does not exist.
    pub async fn get(&self, db: &PgPool, showtime_id: Uuid) -> Result<Arc<Layout>, ApiError> {
        if let Some(layout) = self.entries.read().ok().and_then(|m| m.get(&showtime_id).cloned()) {
            return Ok(layout);
        }
        let layout = Arc::new(load(db, showtime_id).await?);
        if let Ok(mut map) = self.entries.write() {
            if map.len() >= CAPACITY {
                map.clear();
            }
            map.insert(showtime_id, layout.clone());
        }
        Ok(layout)
    }
}

#[tracing::instrument(skip_all, fields(showtime.id = %showtime_id))]
async fn load(db: &PgPool, showtime_id: Uuid) -> Result<Layout, ApiError> {
    let rows = sqlx::query_as::<_, SeatRow>(
        r#"select s.screen_id, se.id, se.row_label as row, se.number, se.category
             from showtimes s join seats se on se.screen_id = s.screen_id
            where s.id = $1 order by se.row_index, se.number"#,
    )
    .bind(showtime_id)
    .fetch_all(db)
    .await?;
    let Some(first) = rows.first() else {
        return Err(ApiError::NotFound("no such showtime"));
    };
    let screen_id = first.screen_id;
    let seats =
        rows.into_iter().map(|r| Seat { id: r.id, row: r.row, number: r.number, category: r.category }).collect();
    Ok(Layout::new(screen_id, seats))
}
