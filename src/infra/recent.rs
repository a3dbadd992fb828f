//! A bounded in-process map of recent facts, kept in two generations: when the newer one is full
//! it becomes the older one and the oldest entries are dropped, so memory stays bounded and the
//! entries made last are kept. For facts that never go stale, only missing (a hold's showtime, a
//! token's verified claims): a miss falls back to where the fact really lives.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

/// Recent entries, at most twice `per_generation` of them.
pub struct Recent<K, V> {
    per_generation: usize,
    generations: Mutex<(HashMap<K, V>, HashMap<K, V>)>,
}

impl<K, V> std::fmt::Debug for Recent<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recent").field("per_generation", &self.per_generation).finish_non_exhaustive()
    }
}

impl<K: Hash + Eq, V: Clone> Recent<K, V> {
    /// An empty map keeping `per_generation` entries per generation.
    pub fn new(per_generation: usize) -> Self {
        Self { per_generation, generations: Mutex::new((HashMap::new(), HashMap::new())) }
    }

    /// Remembers `value` for `key`.
    pub fn insert(&self, key: K, value: V) {
        let Ok(mut g) = self.generations.lock() else { return };
        if g.0.len() >= self.per_generation {
            g.1 = std::mem::take(&mut g.0);
        }
        g.0.insert(key, value);
    }

    /// The value of `key`, if still remembered.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let g = self.generations.lock().ok()?;
        g.0.get(key).or_else(|| g.1.get(key)).cloned()
    }

    /// Forgets `key`.
    pub fn remove<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Ok(mut g) = self.generations.lock() {
            g.0.remove(key);
            g.1.remove(key);
        }
    }
}
