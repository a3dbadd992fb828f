//! Which showtime each hold made by this process belongs to, so that releasing it needs no read
//! of the hold index first: `DELETE /api/v1/holds/{id}` names the hold only, and `release.lua`
//! must be called with the showtime's keys. The fact is immutable (a hold id belongs to one
//! showtime forever), so an entry can never be stale, only missing: a hold made by another API
//! instance, or one forgotten since, falls back to the index in Redis. Ownership is not taken
//! from here: `release.lua` checks the owner itself, so a cached id released by someone else is
//! the same 404 as before.

use uuid::Uuid;

use crate::infra::recent::Recent;

/// Entries per generation; at most twice this many are kept.
const GENERATION: usize = 50_000;

/// Hold id -> showtime id of the holds this process made last (see [`Recent`]).
#[derive(Debug)]
pub struct HoldShowtimes(Recent<Uuid, Uuid>);

impl Default for HoldShowtimes {
    fn default() -> Self {
        Self(Recent::new(GENERATION))
    }
}

impl HoldShowtimes {
    /// Remembers the showtime of a hold this process just made.
    pub fn remember(&self, hold_id: Uuid, showtime_id: Uuid) {
        self.0.insert(hold_id, showtime_id);
    }

    /// The showtime of a hold made by this process, if still remembered.
    pub fn get(&self, hold_id: Uuid) -> Option<Uuid> {
        self.0.get(&hold_id)
    }

    /// Forgets a hold that is gone (released).
    pub fn forget(&self, hold_id: Uuid) {
        self.0.remove(&hold_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remembered_hold_is_found_until_two_generations_have_passed() {
        let cache = HoldShowtimes::default();
        let (first, showtime) = (Uuid::now_v7(), Uuid::now_v7());
        cache.remember(first, showtime);
        for _ in 0..GENERATION {
            cache.remember(Uuid::now_v7(), showtime);
        }
        assert_eq!(cache.get(first), Some(showtime), "kept in the older generation");
        for _ in 0..GENERATION {
            cache.remember(Uuid::now_v7(), showtime);
        }
        assert_eq!(cache.get(first), None, "dropped with the oldest generation");
    }

    #[test]
    fn a_forgotten_hold_is_not_found() {
        let cache = HoldShowtimes::default();
        let hold = Uuid::now_v7();
        cache.remember(hold, Uuid::now_v7());
        cache.forget(hold);
        assert_eq!(cache.get(hold), None);
    }
}
