//! Redis Cluster hash slots, for keys that must live in a showtime's slot without naming the
//! showtime. A hold is addressed by its id alone (`GET /api/v1/holds/{id}`), yet `hold.lua` must
//! write the hold's index in the same atomic step as the hold, and a cluster runs a script only
//! when all its keys are in one slot. So a hold id carries its showtime's slot in 14 of its
//! random bits, and the index key's hash tag is a short string chosen to hash to that slot.

use std::sync::LazyLock;

use uuid::Uuid;

/// Slots of a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// The slot of a key, as Redis Cluster computes it (CRC16-XMODEM of the hash tag, if any).
pub fn slot_of(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|b| *b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.iter().position(|b| *b == b'}').map(|close| &rest[..close])
        })
        .filter(|tag| !tag.is_empty())
        .unwrap_or(key);
    crc16::State::<crc16::XMODEM>::calculate(tagged) % SLOTS
}

/// For every slot, the shortest tag `s<n>` (smallest n) that hashes to it.
static TAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    let mut tags = vec![String::new(); SLOTS as usize];
    let mut missing = SLOTS as usize;
    let mut n: u32 = 0;
    while missing > 0 {
        let tag = format!("s{n}");
        let slot = slot_of(tag.as_bytes()) as usize;
        if tags[slot].is_empty() {
            tags[slot] = tag;
            missing -= 1;
        }
        n += 1;
    }
    tags
});

/// A hash tag (without braces) whose keys land in `slot`.
pub fn tag_for_slot(slot: u16) -> &'static str {
    &TAGS[(slot % SLOTS) as usize]
}

/// A new UUIDv7 whose last 14 random bits are `slot`.
pub fn id_in_slot(slot: u16) -> Uuid {
    let mut bytes = *Uuid::now_v7().as_bytes();
    let slot = slot % SLOTS;
    bytes[14] = (bytes[14] & 0xC0) | (slot >> 8) as u8;
    bytes[15] = (slot & 0xFF) as u8;
    Uuid::from_bytes(bytes)
}

/// The slot an id made by [`id_in_slot`] carries.
pub fn slot_in_id(id: Uuid) -> u16 {
    let bytes = id.as_bytes();
    (u16::from(bytes[14] & 0x3F) << 8) | u16::from(bytes[15])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_the_ones_redis_cluster_documents() {
        // From the Redis Cluster specification's examples and `CLUSTER KEYSLOT`.
        assert_eq!(slot_of(b"123456789"), 0x31C3 % SLOTS);
        assert_eq!(slot_of(b"foo"), 12182);
        assert_eq!(slot_of(b"{user1000}.following"), slot_of(b"user1000"));
        assert_eq!(slot_of(b"foo{}{bar}"), slot_of(b"foo{}{bar}"));
    }

    #[test]
    fn every_slot_has_a_tag_that_hashes_to_it() {
        for slot in 0..SLOTS {
            assert_eq!(slot_of(tag_for_slot(slot).as_bytes()), slot);
        }
    }

    #[test]
    fn an_id_in_a_slot_is_a_version_7_uuid_that_carries_the_slot() {
        for slot in [0, 1, 255, 256, 9000, SLOTS - 1] {
            let id = id_in_slot(slot);
            assert_eq!(id.get_version_num(), 7);
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
            assert_eq!(slot_in_id(id), slot);
        }
    }
}
