//! The Lua scripts, called directly against the real Redis: atomicity, expiry by Redis' clock,
//! owner checks, limits, fencing, and recovery from a flushed script cache.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use deadpool_redis::redis;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use seatgate::holds::store::{
    self, ClaimOutcome, Closed, ExtendOutcome, HoldOutcome, HoldParams, ReleaseOutcome, SeatStatus, ShowtimeMeta,
};
use seatgate::infra::redis::{Keys, ShowtimeKeys};
use uuid::Uuid;

use crate::helpers::test_config;

/// A showtime's keys under a fresh prefix, warmed as if loaded from PostgreSQL.
struct Env {
    pool: seatgate::infra::redis::RedisPool,
    names: Keys,
    showtime_id: Uuid,
    keys: ShowtimeKeys,
    seats: Vec<Uuid>,
}

impl Env {
    async fn new(seats: usize) -> Self {
        let config = test_config();
        let pool = seatgate::infra::redis::pool(&config.redis).expect("pool");
        let names = Keys::new(config.redis.key_prefix.clone());
        let showtime_id = Uuid::now_v7();
        let keys = names.showtime(showtime_id);
        let env = Self { pool, names, showtime_id, keys, seats: (0..seats).map(|_| Uuid::now_v7()).collect() };
        let starts = chrono::Utc::now() + chrono::Duration::hours(2);
        env.warm(ShowtimeMeta { starts_at_ms: starts.timestamp_millis(), cancelled: false }, &[]).await;
        env
    }

    async fn conn(&self) -> store::Conn {
        self.pool.get().await.expect("redis connection")
    }

    async fn warm(&self, meta: ShowtimeMeta, sold: &[Uuid]) {
        store::warm(&mut self.conn().await, &self.keys, meta, sold, Duration::from_secs(600)).await.expect("warm");
        // No sale settings: on sale now, no queue (the admission gate needs its mirror).
        let open = seatgate::onsale::store::SaleMirror::open_now(meta.starts_at_ms + 7_200_000);
        let index = format!("{}-queued", self.keys.holds);
        seatgate::onsale::store::mirror(&mut self.conn().await, &self.keys, &index, Uuid::nil(), &open)
            .await
            .expect("sale mirror");
    }

    async fn hold_for(&self, user: Uuid, seats: &[Uuid], ttl: Duration, max: u32) -> (Uuid, HoldOutcome) {
        let params = HoldParams {
            showtime_id: self.showtime_id,
            hold_id: self.names.new_hold_id(self.showtime_id),
            user_id: user,
            ttl,
            max_lifetime: Duration::from_secs(900),
            max_seats_per_user: max,
        };
        (
            params.hold_id,
            store::hold(&mut self.conn().await, &self.names, &self.keys, params, seats).await.expect("hold.lua"),
        )
    }

    async fn hold(&self, user: Uuid, seats: &[Uuid]) -> (Uuid, HoldOutcome) {
        self.hold_for(user, seats, Duration::from_secs(60), 10).await
    }

    fn seat(&self, i: usize) -> Uuid {
        self.seats[i]
    }
}

fn held(outcome: &HoldOutcome) -> bool {
    matches!(outcome, HoldOutcome::Held { .. })
}

#[tokio::test]
async fn a_partial_overlap_takes_nothing_and_names_exactly_the_taken_seats() {
    // Arrange
    let env = Env::new(4).await;
    let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
    assert!(held(&env.hold(alice, &[env.seat(0), env.seat(1)]).await.1));
    // Act
    let (_, outcome) = env.hold(bob, &[env.seat(1), env.seat(2), env.seat(3)]).await;
    // Assert: refused naming A2 only, and A3/A4 stayed free.
    assert_eq!(outcome, HoldOutcome::Unavailable(vec![env.seat(1)]));
    assert!(held(&env.hold(bob, &[env.seat(2), env.seat(3)]).await.1));
}

#[tokio::test]
async fn an_expired_hold_frees_its_seats_by_redis_time_before_any_sweep() {
    let env = Env::new(2).await;
    let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
    let (_, first) = env.hold_for(alice, &[env.seat(0)], Duration::from_millis(150), 10).await;
    assert!(held(&first));
    assert!(matches!(env.hold(bob, &[env.seat(0)]).await.1, HoldOutcome::Unavailable(_)));
    // Poll (no fixed sleep) until Redis' clock passes the expiry.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if held(&env.hold(bob, &[env.seat(0)]).await.1) {
            break;
        }
        assert!(Instant::now() < deadline, "the expired hold never freed its seat");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn only_the_owner_releases_or_extends_a_hold() {
    let env = Env::new(2).await;
    let (alice, mallory) = (Uuid::now_v7(), Uuid::now_v7());
    let (hold_id, _) = env.hold(alice, &[env.seat(0)]).await;
    let mut conn = env.conn().await;
    let k = &env.keys;
    assert_eq!(
        store::release(&mut conn, &env.names, k, hold_id, &mallory.to_string(), false).await.expect("ok"),
        ReleaseOutcome::NotFound
    );
    assert_eq!(
        store::extend(&mut conn, k, hold_id, mallory, Duration::from_secs(60)).await.expect("ok"),
        ExtendOutcome::NotFound
    );
    assert_eq!(
        store::release(&mut conn, &env.names, k, hold_id, &alice.to_string(), false).await.expect("ok"),
        ReleaseOutcome::Released
    );
    assert_eq!(
        store::release(&mut conn, &env.names, k, hold_id, &alice.to_string(), false).await.expect("ok"),
        ReleaseOutcome::NotFound
    );
    assert!(held(&env.hold(mallory, &[env.seat(0)]).await.1), "a released seat is free at once");
}

#[tokio::test]
async fn extend_covers_payment_once_never_past_the_cap_and_locks_release() {
    let env = Env::new(1).await;
    let alice = Uuid::now_v7();
    let params = HoldParams {
        showtime_id: env.showtime_id,
        hold_id: env.names.new_hold_id(env.showtime_id),
        user_id: alice,
        ttl: Duration::from_secs(10),
        max_lifetime: Duration::from_secs(30),
        max_seats_per_user: 10,
    };
    let mut conn = env.conn().await;
    let HoldOutcome::Held { expires_at_ms: first } =
        store::hold(&mut conn, &env.names, &env.keys, params, &[env.seat(0)]).await.expect("hold")
    else {
        panic!("not held")
    };
    let ExtendOutcome::Extended { expires_at_ms: extended, seats } =
        store::extend(&mut conn, &env.keys, params.hold_id, alice, Duration::from_secs(600)).await.expect("extend")
    else {
        panic!("not extended")
    };
    assert_eq!(seats, [env.seat(0)]);
    // Capped at creation + 30 s, far below now + 600 s.
    assert!(extended > first && extended <= first - 10_000 + 30_000 + 50, "{first} -> {extended}");
    let again =
        store::extend(&mut conn, &env.keys, params.hold_id, alice, Duration::from_secs(600)).await.expect("extend");
    assert_eq!(again, ExtendOutcome::Extended { expires_at_ms: extended, seats }, "a second extension changes nothing");
    let release = store::release(&mut conn, &env.names, &env.keys, params.hold_id, &alice.to_string(), false)
        .await
        .expect("release");
    assert_eq!(release, ReleaseOutcome::Locked);
}

#[tokio::test]
async fn extending_an_expired_hold_says_so() {
    let env = Env::new(1).await;
    let alice = Uuid::now_v7();
    let (hold_id, _) = env.hold_for(alice, &[env.seat(0)], Duration::from_millis(50), 10).await;
    // Wait (reading only, so nothing purges it) until Redis' clock passes the expiry.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let SeatStatus::Map { held, .. } = store::seat_status(&mut env.conn().await, &env.keys).await.expect("map")
        else {
            panic!("cold")
        };
        if held.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let outcome = store::extend(&mut env.conn().await, &env.keys, hold_id, alice, Duration::from_secs(60)).await;
    assert_eq!(outcome.expect("extend"), ExtendOutcome::Expired);
}

#[tokio::test]
async fn a_user_cannot_hold_more_than_the_limit_across_holds() {
    let env = Env::new(5).await;
    let alice = Uuid::now_v7();
    assert!(held(&env.hold_for(alice, &[env.seat(0), env.seat(1)], Duration::from_secs(60), 3).await.1));
    let (_, outcome) = env.hold_for(alice, &[env.seat(2), env.seat(3)], Duration::from_secs(60), 3).await;
    assert_eq!(outcome, HoldOutcome::OverLimit { held: 2 });
    assert!(held(&env.hold_for(alice, &[env.seat(2)], Duration::from_secs(60), 3).await.1));
}

#[tokio::test]
async fn sold_seats_are_refused_and_a_closed_showtime_takes_no_holds() {
    let env = Env::new(3).await;
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).timestamp_millis();
    env.warm(ShowtimeMeta { starts_at_ms: future, cancelled: false }, &[env.seat(0)]).await;
    let alice = Uuid::now_v7();
    assert_eq!(env.hold(alice, &[env.seat(0), env.seat(1)]).await.1, HoldOutcome::Unavailable(vec![env.seat(0)]));
    let past = (chrono::Utc::now() - chrono::Duration::minutes(1)).timestamp_millis();
    env.warm(ShowtimeMeta { starts_at_ms: past, cancelled: false }, &[]).await;
    assert_eq!(env.hold(alice, &[env.seat(1)]).await.1, HoldOutcome::Closed(Closed::Started));
    env.warm(ShowtimeMeta { starts_at_ms: future, cancelled: true }, &[]).await;
    assert_eq!(env.hold(alice, &[env.seat(1)]).await.1, HoldOutcome::Closed(Closed::Cancelled));
}

#[tokio::test]
async fn a_missing_cache_is_reported_cold_instead_of_guessed() {
    let env = Env::new(1).await;
    let _: () = redis::cmd("DEL").arg(&env.keys.sold).query_async(&mut env.conn().await).await.expect("del");
    assert_eq!(env.hold(Uuid::now_v7(), &[env.seat(0)]).await.1, HoldOutcome::Cold);
    assert_eq!(store::seat_status(&mut env.conn().await, &env.keys).await.expect("map"), SeatStatus::Cold);
}

#[tokio::test]
async fn claim_is_fenced_by_hold_id() {
    // Arrange: alice's hold expires and bob takes one of her seats.
    let env = Env::new(3).await;
    let (alice, bob, carol) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let (alice_hold, _) = env.hold_for(alice, &[env.seat(0), env.seat(1)], Duration::from_millis(50), 10).await;
    let (carol_hold, _) = env.hold(carol, &[env.seat(2)]).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !held(&env.hold(bob, &[env.seat(1)]).await.1) {
        assert!(Instant::now() < deadline, "alice's hold never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut conn = env.conn().await;
    let ttl = Duration::from_secs(30);
    // Act + Assert: alice's late claim loses exactly the seat bob holds; carol's wins.
    let lost =
        store::claim(&mut conn, &env.keys, alice_hold, alice, &[env.seat(0), env.seat(1)], ttl).await.expect("claim");
    assert_eq!(lost, ClaimOutcome::Lost(vec![env.seat(1)]));
    let won = store::claim(&mut conn, &env.keys, carol_hold, carol, &[env.seat(2)], ttl).await.expect("claim");
    assert_eq!(won, ClaimOutcome::Claimed);
    // After the sale, a claim of a sold seat is lost too.
    store::sell(&mut conn, &env.keys, &env.names, carol_hold, &[env.seat(2)], ttl).await.expect("sell");
    let again = store::claim(&mut conn, &env.keys, alice_hold, alice, &[env.seat(2)], ttl).await.expect("claim");
    assert_eq!(again, ClaimOutcome::Lost(vec![env.seat(2)]));
}

#[tokio::test]
async fn a_claim_survives_redis_losing_every_key_when_the_seats_are_still_free() {
    let env = Env::new(2).await;
    let alice = Uuid::now_v7();
    let (hold_id, _) = env.hold(alice, &[env.seat(0)]).await;
    let mut conn = env.conn().await;
    let _: () = redis::cmd("DEL")
        .arg(&env.keys.holds)
        .arg(&env.keys.info)
        .arg(&env.keys.expiry)
        .arg(&env.keys.users)
        .query_async(&mut conn)
        .await
        .expect("del");
    let outcome = store::claim(&mut conn, &env.keys, hold_id, alice, &[env.seat(0)], Duration::from_secs(30)).await;
    assert_eq!(outcome.expect("claim"), ClaimOutcome::Claimed);
    assert!(matches!(env.hold(Uuid::now_v7(), &[env.seat(0)]).await.1, HoldOutcome::Unavailable(_)));
}

#[tokio::test]
async fn sold_seats_show_as_sold_and_holds_as_held_in_the_seat_status() {
    let env = Env::new(3).await;
    let alice = Uuid::now_v7();
    let (hold_id, _) = env.hold(alice, &[env.seat(0), env.seat(1)]).await;
    let mut conn = env.conn().await;
    store::sell(&mut conn, &env.keys, &env.names, hold_id, &[env.seat(0), env.seat(1)], Duration::from_secs(60))
        .await
        .expect("sell");
    let (bob_hold, _) = env.hold(Uuid::now_v7(), &[env.seat(2)]).await;
    let SeatStatus::Map { sold, held } = store::seat_status(&mut conn, &env.keys).await.expect("map") else {
        panic!("cold")
    };
    assert_eq!(sold.into_iter().collect::<HashSet<_>>(), HashSet::from([env.seat(0), env.seat(1)]));
    assert_eq!(held.len(), 1);
    assert_eq!((held[0].seat_id, held[0].hold_id), (env.seat(2), bob_hold));
    store::unsell(&mut conn, &env.keys, &[env.seat(0)], Duration::from_secs(60)).await.expect("unsell");
    assert!(held_ok(&env, &[env.seat(0)]).await, "an unsold seat can be held again");
}

async fn held_ok(env: &Env, seats: &[Uuid]) -> bool {
    held(&env.hold(Uuid::now_v7(), seats).await.1)
}

#[tokio::test]
async fn sweep_drops_expired_holds_and_reports_what_remains() {
    let env = Env::new(3).await;
    env.hold_for(Uuid::now_v7(), &[env.seat(0)], Duration::from_millis(30), 10).await;
    env.hold(Uuid::now_v7(), &[env.seat(1)]).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (dropped, remaining) = store::sweep(&mut env.conn().await, &env.keys).await.expect("sweep");
        if dropped == 1 {
            assert_eq!(remaining, 1);
            break;
        }
        assert!(Instant::now() < deadline, "never swept");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn scripts_reload_themselves_after_script_flush() {
    let env = Env::new(2).await;
    assert!(held(&env.hold(Uuid::now_v7(), &[env.seat(0)]).await.1));
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut env.conn().await).await.expect("flush");
    assert!(held(&env.hold(Uuid::now_v7(), &[env.seat(1)]).await.1), "EVALSHA fell back to loading the script");
}

#[tokio::test]
async fn hundreds_of_racing_holds_never_share_a_seat_and_refusals_name_taken_seats() {
    for seed in [1_u64, 7, 42, 2026] {
        // Arrange: 60 seats, 240 users each wanting 1-4 random seats.
        let env = std::sync::Arc::new(Env::new(60).await);
        let mut rng = StdRng::seed_from_u64(seed);
        let requests: Vec<Vec<Uuid>> = (0..240)
            .map(|_| {
                let n = rng.random_range(1..=4);
                env.seats.choose_multiple(&mut rng, n).copied().collect()
            })
            .collect();
        // Act: all at once.
        let tasks: Vec<_> = requests
            .into_iter()
            .map(|seats| {
                let env = env.clone();
                tokio::spawn(async move {
                    let (hold_id, outcome) = env.hold(Uuid::now_v7(), &seats).await;
                    (hold_id, seats, outcome)
                })
            })
            .collect();
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.expect("task"));
        }
        // Assert: no seat in two granted holds; each refusal names only seats of granted holds,
        // and exactly those of its seats that granted holds took.
        let mut owner: HashMap<Uuid, Uuid> = HashMap::new();
        for (hold_id, seats, outcome) in &results {
            if held(outcome) {
                for seat in seats {
                    assert!(owner.insert(*seat, *hold_id).is_none(), "seed {seed}: seat {seat} granted twice");
                }
            }
        }
        let mut refused = 0;
        for (_, seats, outcome) in &results {
            if let HoldOutcome::Unavailable(taken) = outcome {
                refused += 1;
                // Named seats were requested and went to granted holds (the refusal happened
                // before later grants, so it may name fewer than end up taken).
                assert!(!taken.is_empty(), "seed {seed}: a refusal named no seat");
                for seat in taken {
                    assert!(seats.contains(seat) && owner.contains_key(seat), "seed {seed}: {seat} was free");
                }
            } else {
                assert!(held(outcome), "seed {seed}: unexpected {outcome:?}");
            }
        }
        assert!(refused > 0, "seed {seed}: the race had no conflict at all");
        // Redis agrees: every live hold owns exactly the seats recorded.
        let SeatStatus::Map { held: live, .. } =
            store::seat_status(&mut env.conn().await, &env.keys).await.expect("map")
        else {
            panic!("cold")
        };
        assert_eq!(live.len(), owner.len());
        for h in live {
            assert_eq!(owner.get(&h.seat_id), Some(&h.hold_id), "seed {seed}");
        }
    }
}
