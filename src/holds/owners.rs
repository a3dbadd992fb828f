//! Which showtime each hold made by this process belongs to, so that releasing it needs no read
//! of the hold index first: `DELETE /api/v1/holds/{id}` names the hold only, and `release.lua`
//! must be called with the showtime's keys. The fact is immutable (a hold id belongs to one
//! showtime forever), so an entry can never be stale, only missing: a hold made by another API
//! instance, or one forgotten since, falls back to the index in Redis. Ownership is not taken
//! from here: `release.lua` checks the owner itself, so a cached id released by someone else is
//! the same 404 as before.

use std::collections::HashMap;
use std::sync::Mutex;

use uuid::Uuid;

/// Entries per generation; at most twice this many are kept.
const GENERATION: usize = 50_000;

/// Hold id -> showtime id of recent holds, in two generations: when the newer one is full it
/// becomes the older one and the oldest entries are dropped, so memory stays bounded and the
/// holds made last (the ones about to be released) are kept.
#[derive(Debug, Default)]
pub struct HoldShowtimes {
    generations: Mutex<(HashMap<Uuid, Uuid>, HashMap<Uuid, Uuid>)>,
}

impl HoldShowtimes {
    /// Remembers the showtime of a hold this process just made.
    pub fn remember(&self, hold_id: Uuid, showtime_id: Uuid) {
        let Ok(mut g) = self.generations.lock() else { return };
        if g.0.len() >= GENERATION {
            g.1 = std::mem::take(&mut g.0);
        }
        g.0.insert(hold_id, showtime_id);
    }

    /// The showtime of a hold made by this process, if still remembered.
    pub fn get(&self, hold_id: Uuid) -> Option<Uuid> {
        let g = self.generations.lock().ok()?;
        g.0.get(&hold_id).or_else(|| g.1.get(&hold_id)).copied()
    }

    /// Forgets a hold that is gone (released).
    pub fn forget(&self, hold_id: Uuid) {
        if let Ok(mut g) = self.generations.lock() {
            g.0.remove(&hold_id);
            g.1.remove(&hold_id);
        }
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
