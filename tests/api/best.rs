//! Best-available holds (docs/DESIGN.md §6): `lua/best.lua` run against the real Redis on
//! hand-drawn rows, compared with a slow reference picker on many random layouts, and raced
//! through the API.
//!
//! Drawings: one string per row, front row first; `.` free, `X` sold, `H` held by a live hold,
//! `E` held by a hold that has expired (free again), `#` the seats the script picked. An
//! optional second drawing gives each seat's category: `s` standard, `p` premium.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use deadpool_redis::redis;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use seatgate::holds::store::{self, BestOutcome, BestRequest, HoldParams, ScanLayout, ShowtimeMeta};
use seatgate::infra::redis::{Keys, ShowtimeKeys};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{TestApp, test_config};

const CATEGORIES: [&str; 2] = ["standard", "premium"];

/// One showtime's keys under a fresh prefix, warmed with a drawn house.
struct House {
    pool: seatgate::infra::redis::RedisPool,
    names: Keys,
    showtime_id: Uuid,
    keys: ShowtimeKeys,
    /// Seat ids by row and position.
    ids: Vec<Vec<Uuid>>,
    drawing: Vec<Vec<u8>>,
}

impl House {
    async fn new(pool: &seatgate::infra::redis::RedisPool, prefix: &str, rows: &[&str], cats: Option<&[&str]>) -> Self {
        let names = Keys::new(prefix.to_owned());
        let showtime_id = Uuid::now_v7();
        let keys = names.showtime(showtime_id);
        let drawing: Vec<Vec<u8>> = rows.iter().map(|r| r.as_bytes().to_vec()).collect();
        let ids: Vec<Vec<Uuid>> = drawing.iter().map(|r| r.iter().map(|_| Uuid::now_v7()).collect()).collect();
        let house = Self { pool: pool.clone(), names, showtime_id, keys, ids, drawing };
        let mut conn = house.pool.get().await.expect("redis connection");
        let starts = chrono::Utc::now() + chrono::Duration::hours(2);
        let sold: Vec<Uuid> = house.seats_drawn(b'X');
        let meta = ShowtimeMeta { starts_at_ms: starts.timestamp_millis(), cancelled: false };
        store::warm(&mut conn, &house.keys, meta, &sold, Duration::from_secs(120)).await.expect("warm");
        // No sale settings: on sale now, no queue (the admission gate needs its mirror).
        let open = seatgate::holds::gate::SaleMirror::open_now(meta.starts_at_ms + 7_200_000);
        let index = house.names.queued_showtimes();
        seatgate::holds::gate::mirror(&mut conn, &house.keys, &index, house.showtime_id, &open)
            .await
            .expect("sale mirror");
        let layout = ScanLayout {
            categories: CATEGORIES.iter().map(|c| (*c).to_owned()).collect(),
            rows: house
                .ids
                .iter()
                .enumerate()
                .map(|(r, row)| {
                    row.iter()
                        .enumerate()
                        .map(|(j, id)| {
                            let cat = cats.map_or(b's', |c| c[r].as_bytes()[j]);
                            (*id, usize::from(cat == b'p'))
                        })
                        .collect()
                })
                .collect(),
        };
        store::set_layout(&mut conn, &house.keys, &layout, Duration::from_secs(120)).await.expect("layout");
        // Live holds far in the future, expired ones in the past; the script must tell them apart
        // by Redis' clock alone (the expired ones are not even in the expiry set).
        let far = chrono::Utc::now().timestamp_millis() + 3_600_000;
        let past = chrono::Utc::now().timestamp_millis() - 1_000;
        for (mark, at) in [(b'H', far), (b'E', past)] {
            for seat in house.seats_drawn(mark) {
                let _: () = redis::cmd("HSET")
                    .arg(&house.keys.holds)
                    .arg(seat.to_string())
                    .arg(format!("{}:{at}", Uuid::now_v7()))
                    .query_async(&mut conn)
                    .await
                    .expect("hset");
            }
        }
        let _: () =
            redis::cmd("PEXPIRE").arg(&house.keys.holds).arg(120_000).query_async(&mut conn).await.expect("ttl");
        house
    }

    fn seats_drawn(&self, mark: u8) -> Vec<Uuid> {
        let mut seats = Vec::new();
        for (r, row) in self.drawing.iter().enumerate() {
            for (j, c) in row.iter().enumerate() {
                if *c == mark {
                    seats.push(self.ids[r][j]);
                }
            }
        }
        seats
    }

    async fn pick(&self, count: u32, category: Option<&str>) -> BestOutcome {
        let params = HoldParams {
            showtime_id: self.showtime_id,
            hold_id: self.names.new_hold_id(self.showtime_id),
            user_id: Uuid::now_v7(),
            ttl: Duration::from_secs(60),
            max_lifetime: Duration::from_secs(120),
            max_seats_per_user: 100,
        };
        let mut conn = self.pool.get().await.expect("redis connection");
        store::hold_best(&mut conn, &self.names, &self.keys, params, BestRequest { count, category })
            .await
            .expect("best.lua")
    }

    /// (row, position) of each seat.
    fn position(&self, seat: Uuid) -> (usize, usize) {
        for (r, row) in self.ids.iter().enumerate() {
            if let Some(j) = row.iter().position(|id| *id == seat) {
                return (r, j);
            }
        }
        panic!("seat {seat} is not in the house");
    }

    /// The drawing with the picked seats marked `#`.
    fn with_picked(&self, seats: &[Uuid]) -> Vec<String> {
        let mut drawing = self.drawing.clone();
        for seat in seats {
            let (r, j) = self.position(*seat);
            drawing[r][j] = b'#';
        }
        drawing.into_iter().map(|r| String::from_utf8(r).expect("ascii")).collect()
    }
}

async fn redis_pool() -> (seatgate::infra::redis::RedisPool, String) {
    let config = test_config();
    (seatgate::infra::redis::pool(&config.redis).expect("pool"), config.redis.key_prefix)
}

/// Runs the script on a drawn house; the drawing with the pick marked, or None.
async fn pick(rows: &[&str], cats: Option<&[&str]>, count: u32, category: Option<&str>) -> Option<Vec<String>> {
    let (pool, prefix) = redis_pool().await;
    let house = House::new(&pool, &prefix, rows, cats).await;
    match house.pick(count, category).await {
        BestOutcome::Held { seats, .. } => {
            assert_eq!(seats.len(), count as usize);
            Some(house.with_picked(&seats))
        }
        BestOutcome::NoBlock => None,
        other => panic!("unexpected outcome {other:?}"),
    }
}

/// The rows `best.lua` remembers as sold out.
async fn sold_out_rows(house: &House) -> Vec<String> {
    let mut conn = house.pool.get().await.expect("redis connection");
    let mut rows: Vec<String> =
        redis::cmd("SMEMBERS").arg(&house.keys.full).query_async(&mut conn).await.expect("smembers");
    rows.sort();
    rows
}

#[tokio::test]
async fn a_sold_out_row_is_remembered_until_a_seat_of_it_is_sold_no_more() {
    // Arrange: the middle row B is sold out.
    let (pool, prefix) = redis_pool().await;
    let house = House::new(&pool, &prefix, &["....", "XXXX", "...."], None).await;
    // Act: a pick looks at B first, finds it sold out and remembers it.
    let BestOutcome::Held { seats, .. } = house.pick(1, None).await else { panic!("a free seat") };
    // Assert: of A and C, equally near the middle, the one further back; B is remembered.
    assert_eq!(house.position(seats[0]).0, 2);
    assert_eq!(sold_out_rows(&house).await, ["1"]);
    // The memory lasts a minute at most, whatever frees seats without knowing of it.
    let mut conn = pool.get().await.expect("redis connection");
    let ttl: i64 = redis::cmd("PTTL").arg(&house.keys.full).query_async(&mut conn).await.expect("pttl");
    assert!((1..=60_000).contains(&ttl), "ttl {ttl}");
    // A cancelled booking frees B2: the memory goes, and the next pick takes B2, in the middle row.
    let b2 = house.ids[1][1];
    store::unsell(&mut conn, &house.keys, &[b2], Duration::from_secs(120)).await.expect("unsell");
    assert!(sold_out_rows(&house).await.is_empty());
    let BestOutcome::Held { seats, .. } = house.pick(1, None).await else { panic!("a free seat") };
    assert_eq!(seats, [b2]);

    // The same when the sweeper finds a seat shown sold that is no longer booked.
    let house = House::new(&pool, &prefix, &["XXX"], None).await;
    assert!(matches!(house.pick(1, None).await, BestOutcome::NoBlock));
    assert_eq!(sold_out_rows(&house).await, ["0"]);
    let a3 = house.ids[0][2];
    store::correct_sold(&mut conn, &house.keys, &[], &[a3]).await.expect("resync");
    assert!(sold_out_rows(&house).await.is_empty());
    let BestOutcome::Held { seats, .. } = house.pick(1, None).await else { panic!("a free seat") };
    assert_eq!(seats, [a3]);
}

#[tokio::test]
async fn the_middle_row_and_the_middle_of_the_row_come_first() {
    let picked = pick(&["......", "......", "......"], None, 2, None).await;
    assert_eq!(picked.expect("a block"), ["......", "..##..", "......"]);
}

#[tokio::test]
async fn between_two_rows_equally_near_the_middle_the_one_further_back_wins() {
    let picked = pick(&["......", "......"], None, 2, None).await;
    assert_eq!(picked.expect("a block"), ["......", "..##.."]);
}

#[tokio::test]
async fn between_two_blocks_equally_near_the_middle_of_the_row_the_left_one_wins() {
    let picked = pick(&["........"], None, 3, None).await;
    assert_eq!(picked.expect("a block"), ["..###..."]);
}

#[tokio::test]
async fn a_block_that_strands_a_single_seat_between_taken_seats_loses_to_one_that_does_not() {
    // The run of three in the middle is nearer the middle, but any pair in it leaves one seat alone.
    let picked = pick(&["XX...XX..XX"], None, 2, None).await;
    assert_eq!(picked.expect("a block"), ["XX...XX##XX"]);
}

#[tokio::test]
async fn a_block_that_strands_a_seat_at_the_row_end_loses_to_a_worse_row_that_strands_nothing() {
    // Row B (the middle) can only leave seat B1 alone at the row's end or B3 between the pair and
    // the sold seats; row A, further from the middle, has a clean pair.
    let picked = pick(&["XX..XX", "...XXXX", "XXXXXXX"], None, 2, None).await;
    assert_eq!(picked.expect("a block"), ["XX##XX", "...XXXX", "XXXXXXX"]);
}

#[tokio::test]
async fn in_a_row_of_four_a_pair_goes_to_one_end_rather_than_strand_both_end_seats() {
    let picked = pick(&["...."], None, 2, None).await;
    assert_eq!(picked.expect("a block"), ["##.."]);
}

#[tokio::test]
async fn when_every_block_strands_a_seat_the_best_row_and_middle_still_decide() {
    let picked = pick(&["X...X"], None, 2, None).await;
    assert_eq!(picked.expect("a block"), ["X##.X"]);
}

#[tokio::test]
async fn held_and_sold_seats_are_taken_and_an_expired_hold_is_free() {
    let picked = pick(&["HE.X"], None, 2, None).await;
    assert_eq!(picked.expect("a block"), ["H##X"]);
}

#[tokio::test]
async fn a_category_limits_the_pick_to_its_seats() {
    let rows = ["......", "......"];
    let cats: &[&str] = &["ssssss", "pppppp"];
    assert_eq!(pick(&rows, Some(cats), 2, Some("standard")).await.expect("a block"), ["..##..", "......"]);
    assert_eq!(pick(&rows, Some(cats), 2, Some("premium")).await.expect("a block"), ["......", "..##.."]);
    assert_eq!(pick(&rows, Some(cats), 2, Some("balcony")).await, None);
}

#[tokio::test]
async fn no_block_of_adjacent_free_seats_means_no_pick_and_nothing_held() {
    let (pool, prefix) = redis_pool().await;
    let house = House::new(&pool, &prefix, &["X.X.X", ".H.X."], None).await;
    assert_eq!(house.pick(2, None).await, BestOutcome::NoBlock);
    let mut conn = pool.get().await.expect("redis connection");
    let held: i64 = redis::cmd("HLEN").arg(&house.keys.holds).query_async(&mut conn).await.expect("hlen");
    assert_eq!(held, 1, "only the drawn hold is there");
}

#[tokio::test]
async fn a_missing_layout_is_reported_cold_so_the_api_can_rebuild_it() {
    let (pool, prefix) = redis_pool().await;
    let house = House::new(&pool, &prefix, &["...."], None).await;
    let mut conn = pool.get().await.expect("redis connection");
    let _: () = redis::cmd("DEL").arg(&house.keys.layout).query_async(&mut conn).await.expect("del");
    assert_eq!(house.pick(2, None).await, BestOutcome::Cold);
}

// ---------------------------------------------------------------------------------------------
// The slow reference: every block of every row, scored by the rules of docs/DESIGN.md §6, the least
// score wins. The script must always agree with it.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Cell {
    Free,
    Taken,
}

/// (row, start) of the best block, or None.
fn reference_pick(rows: &[Vec<(Cell, usize)>], count: usize, category: Option<usize>) -> Option<(usize, usize)> {
    let nrows = rows.len() as i64;
    let free = |row: &Vec<(Cell, usize)>, j: i64| j >= 0 && (j as usize) < row.len() && row[j as usize].0 == Cell::Free;
    // (stranded, row rank, seat distance, start) of the best block so far, and where it is.
    type Score = (usize, i64, i64, usize);
    let mut best: Option<(Score, (usize, usize))> = None;
    for (r, row) in rows.iter().enumerate() {
        let n = row.len();
        for s in 0..n.saturating_sub(count - 1) {
            let usable = (s..s + count).all(|j| row[j].0 == Cell::Free && category.is_none_or(|c| row[j].1 == c));
            if !usable {
                continue;
            }
            let (left, right) = (s as i64 - 1, (s + count) as i64);
            let alone = |j: i64, beyond: i64| free(row, j) && !free(row, beyond);
            let stranded = usize::from(alone(left, left - 1)) + usize::from(alone(right, right + 1));
            let row_distance = (2 * r as i64 - (nrows - 1)).abs();
            // Equally near the middle: the row further back first.
            let row_rank = row_distance * 2 + i64::from(2 * (r as i64) < nrows);
            let seat_distance = (2 * s as i64 + count as i64 - 1 - (n as i64 - 1)).abs();
            let score = (stranded, row_rank, seat_distance, s);
            if best.as_ref().is_none_or(|(b, _)| score < *b) {
                best = Some((score, (r, s)));
            }
        }
    }
    best.map(|(_, at)| at)
}

#[tokio::test]
async fn the_script_picks_what_the_slow_reference_picks_on_a_thousand_random_houses() {
    // Arrange: one seed, so a failure is reproducible; it is printed with the failing house.
    let (pool, prefix) = redis_pool().await;
    let seed = 0x5ea7_6a7e;
    let mut rng = StdRng::seed_from_u64(seed);
    for round in 0..1000 {
        let nrows = rng.random_range(1..=6);
        let density: f64 = rng.random_range(0.0..0.9);
        let mixed_categories = rng.random_bool(0.3);
        let mut drawing = Vec::new();
        let mut cats = Vec::new();
        for _ in 0..nrows {
            let n = rng.random_range(1..=13);
            let row_cat = if rng.random_bool(0.5) { 's' } else { 'p' };
            let mut line = String::new();
            let mut cat_line = String::new();
            for _ in 0..n {
                let mark = if rng.random_bool(density) { ['X', 'H', 'E'][rng.random_range(0..3)] } else { '.' };
                line.push(mark);
                cat_line.push(if mixed_categories && rng.random_bool(0.3) { 'p' } else { row_cat });
            }
            drawing.push(line);
            cats.push(cat_line);
        }
        let count = rng.random_range(1..=5);
        let category = match rng.random_range(0..4) {
            0 => Some(0),
            1 => Some(1),
            _ => None,
        };
        let rows: Vec<Vec<(Cell, usize)>> = drawing
            .iter()
            .zip(&cats)
            .map(|(line, cat)| {
                line.bytes()
                    .zip(cat.bytes())
                    .map(|(m, c)| {
                        (if matches!(m, b'.' | b'E') { Cell::Free } else { Cell::Taken }, usize::from(c == b'p'))
                    })
                    .collect()
            })
            .collect();
        let drawn: Vec<&str> = drawing.iter().map(String::as_str).collect();
        let drawn_cats: Vec<&str> = cats.iter().map(String::as_str).collect();
        let house = House::new(&pool, &prefix, &drawn, Some(&drawn_cats)).await;

        // Act
        let outcome = house.pick(count as u32, category.map(|c| CATEGORIES[c])).await;

        // Assert
        let expected = reference_pick(&rows, count, category);
        let got = match &outcome {
            BestOutcome::Held { seats, .. } => {
                let (r, s) = house.position(seats[0]);
                let block: Vec<(usize, usize)> = seats.iter().map(|id| house.position(*id)).collect();
                assert_eq!(block, (s..s + count).map(|j| (r, j)).collect::<Vec<_>>(), "not one adjacent block");
                Some((r, s))
            }
            BestOutcome::NoBlock => None,
            other => panic!("unexpected outcome {other:?}"),
        };
        assert_eq!(
            got, expected,
            "seed {seed:#x} round {round}: count {count}, category {category:?}, house {drawing:?}, categories {cats:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Through the API

/// A showtime of `rows` and its seat ids by row label and number.
async fn showtime(app: &TestApp, rows: &[(&str, u32, &str)]) -> (String, Vec<(String, i64, String)>) {
    let showtime = app.seed_showtime(rows, 24).await;
    let screen = app.get(&format!("/api/v1/screens/{}", showtime["screen_id"].as_str().expect("id")), None).await;
    let screen = screen.json_status(200).await;
    let seats = screen["seats"]
        .as_array()
        .expect("seats")
        .iter()
        .map(|s| {
            (
                s["row"].as_str().expect("row").to_owned(),
                s["number"].as_i64().expect("number"),
                s["id"].as_str().expect("id").to_owned(),
            )
        })
        .collect();
    (showtime["id"].as_str().expect("id").to_owned(), seats)
}

fn label(seats: &[(String, i64, String)], id: &str) -> String {
    let (row, number, _) = seats.iter().find(|s| s.2 == id).expect("a seat of the showtime");
    format!("{row}{number}")
}

fn ids(body: &Value) -> Vec<String> {
    body["seat_ids"].as_array().expect("seat_ids").iter().map(|v| v.as_str().expect("id").to_owned()).collect()
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_best_available_hold_answers_like_a_hold_of_named_seats(db: PgPool) {
    // Arrange
    let app = TestApp::spawn(db).await;
    let (show, seats) = showtime(&app, &[("A", 6, "standard"), ("B", 6, "standard"), ("C", 6, "standard")]).await;
    let user = app.new_user().await;
    let path = format!("/api/v1/showtimes/{show}/holds");
    // Act
    let body =
        app.post(&path, Some(&user.token), &json!({"best_available": {"count": 2}})).await.json_status(201).await;
    // Assert: the middle of the middle row, and the hold reads back like any other.
    let picked: Vec<String> = ids(&body).iter().map(|id| label(&seats, id)).collect();
    assert_eq!(picked, ["B3", "B4"]);
    assert_eq!(body["showtime_id"], json!(show));
    assert_eq!(body["status"], "held");
    assert!(body["expires_at"].as_str().is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok()));
    let hold = app.get(&format!("/api/v1/holds/{}", body["hold_id"].as_str().expect("id")), Some(&user.token)).await;
    assert_eq!(hold.json_status(200).await["seat_ids"], body["seat_ids"]);
    let map = app.get(&format!("/api/v1/showtimes/{show}/seats"), Some(&user.token)).await.json_status(200).await;
    let mine: Vec<String> = map["seats"]
        .as_array()
        .expect("seats")
        .iter()
        .filter(|s| s["held_by_me"] == json!(true))
        .map(|s| s["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(mine, ids(&body));
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_layout_missing_from_redis_is_rebuilt_from_postgres(db: PgPool) {
    // Arrange
    let app = TestApp::spawn(db).await;
    let (show, seats) = showtime(&app, &[("A", 6, "standard")]).await;
    let user = app.new_user().await;
    let path = format!("/api/v1/showtimes/{show}/holds");
    let first =
        app.post(&path, Some(&user.token), &json!({"best_available": {"count": 2}})).await.json_status(201).await;
    assert_eq!(ids(&first).iter().map(|id| label(&seats, id)).collect::<Vec<_>>(), ["A3", "A4"]);
    let keys = app.state.keys.showtime(show.parse().expect("uuid"));
    let mut conn = app.state.redis.get().await.expect("redis");
    let _: () = redis::cmd("DEL").arg(&keys.layout).arg(&keys.sold).query_async(&mut conn).await.expect("del");
    // Act
    let body =
        app.post(&path, Some(&user.token), &json!({"best_available": {"count": 2}})).await.json_status(201).await;
    // Assert: A3 and A4 are still held (the rebuilt layout and sold set agree with Redis' holds);
    // A1-A2 and A5-A6 are equally far from the middle, the left pair wins.
    assert_eq!(ids(&body).iter().map(|id| label(&seats, id)).collect::<Vec<_>>(), ["A1", "A2"]);
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn best_available_with_no_free_block_is_409_naming_no_seats(db: PgPool) {
    // Arrange
    let app = TestApp::spawn(db).await;
    let (show, seats) = showtime(&app, &[("A", 3, "standard")]).await;
    let (alice, bob) = (app.new_user().await, app.new_user().await);
    let path = format!("/api/v1/showtimes/{show}/holds");
    app.post(&path, Some(&alice.token), &json!({"seat_ids": [seats[1].2]})).await.json_status(201).await;
    // Act
    let res = app.post(&path, Some(&bob.token), &json!({"best_available": {"count": 2}})).await;
    // Assert
    let status = res.status().as_u16();
    let body: Value = res.json().await;
    assert_eq!(status, 409);
    assert_eq!(body["code"], "seats_unavailable");
    assert_eq!(body["unavailable_seat_ids"], json!([]));
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_hold_body_must_name_seats_or_best_available_and_a_sensible_count_and_category(db: PgPool) {
    // Arrange
    let app = TestApp::spawn(db).await;
    let (show, seats) = showtime(&app, &[("A", 4, "standard")]).await;
    let user = app.new_user().await;
    let path = format!("/api/v1/showtimes/{show}/holds");
    let cases = [
        (json!({"seat_ids": [seats[0].2], "best_available": {"count": 1}}), "best_available"),
        (json!({}), "seat_ids"),
        (json!({"best_available": {"count": 0}}), "best_available.count"),
        (json!({"best_available": {"count": 11}}), "best_available.count"),
        (json!({"best_available": {"count": 2, "category": "balcony"}}), "best_available.category"),
        (json!({"best_available": {"count": -1}}), ""),
        (json!({"best_available": {"count": 2, "colour": "red"}}), "colour"),
    ];
    for (body, field) in cases {
        // Act
        let problem = app.post(&path, Some(&user.token), &body).await.problem(422).await;
        // Assert
        assert_eq!(problem.code, "validation_failed", "{body}");
        assert!(problem.errors.iter().any(|e| e.field.ends_with(field)), "{body}: {:?}", problem.errors);
    }
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn racing_best_available_holds_never_overlap_and_all_succeed_until_the_house_is_full(db: PgPool) {
    // Arrange: 40 seats, 24 buyers of 2 each, all released at once. Pairs in rows of ten never
    // strand a seat (the script fills a row from the middle out), so exactly 20 buyers get seats
    // whatever order Redis runs them in, and the other 4 find the house full.
    let app = Arc::new(TestApp::spawn(db).await);
    let rows: Vec<(&str, u32, &str)> = ["A", "B", "C", "D"].iter().map(|r| (*r, 10, "standard")).collect();
    let (show, seats) = showtime(&app, &rows).await;
    let mut users = Vec::new();
    for _ in 0..24 {
        users.push(app.new_user().await);
    }
    let start = Arc::new(tokio::sync::Barrier::new(users.len()));
    // Act
    let racers: Vec<_> = users
        .into_iter()
        .map(|user| {
            let (app, start, path) = (app.clone(), start.clone(), format!("/api/v1/showtimes/{show}/holds"));
            tokio::spawn(async move {
                start.wait().await;
                let res = app.post(&path, Some(&user.token), &json!({"best_available": {"count": 2}})).await;
                let status = res.status().as_u16();
                (status, res.json::<Value>().await)
            })
        })
        .collect();
    let mut granted = Vec::new();
    let mut refused = 0;
    for racer in racers {
        let (status, body) = racer.await.expect("racer");
        match status {
            201 => granted.push(ids(&body)),
            409 => {
                assert_eq!(body["unavailable_seat_ids"], json!([]));
                refused += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    // Assert
    assert_eq!((granted.len(), refused), (20, 4));
    let all: HashSet<&String> = granted.iter().flatten().collect();
    assert_eq!(all.len(), 40, "two holds shared a seat");
    for pair in &granted {
        let a = seats.iter().find(|s| s.2 == pair[0]).expect("seat");
        let b = seats.iter().find(|s| s.2 == pair[1]).expect("seat");
        assert_eq!((a.0.as_str(), a.1 + 1), (b.0.as_str(), b.1), "a pair is not two adjacent seats");
    }
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn racing_best_available_holds_leave_no_single_seat_stranded(db: PgPool) {
    // Arrange: 12 buyers of 2 on 40 seats, all released at once.
    let app = Arc::new(TestApp::spawn(db).await);
    let rows: Vec<(&str, u32, &str)> = ["A", "B", "C", "D"].iter().map(|r| (*r, 10, "standard")).collect();
    let (show, seats) = showtime(&app, &rows).await;
    let mut users = Vec::new();
    for _ in 0..12 {
        users.push(app.new_user().await);
    }
    let start = Arc::new(tokio::sync::Barrier::new(users.len()));
    // Act
    let racers: Vec<_> = users
        .into_iter()
        .map(|user| {
            let (app, start, path) = (app.clone(), start.clone(), format!("/api/v1/showtimes/{show}/holds"));
            tokio::spawn(async move {
                start.wait().await;
                app.post(&path, Some(&user.token), &json!({"best_available": {"count": 2}}))
                    .await
                    .json_status(201)
                    .await
            })
        })
        .collect();
    let mut taken = HashSet::new();
    for racer in racers {
        for id in ids(&racer.await.expect("racer")) {
            assert!(taken.insert(id), "two holds shared a seat");
        }
    }
    // Assert: every free run left in a row is at least two seats long.
    for row in ["A", "B", "C", "D"] {
        let line: String = (1..=10)
            .map(|n| {
                let seat = seats.iter().find(|s| s.0 == row && s.1 == n).expect("seat");
                if taken.contains(&seat.2) { 'H' } else { '.' }
            })
            .collect();
        let singles = line.split('H').filter(|run| run.len() == 1).count();
        assert_eq!(singles, 0, "row {row} is {line}");
    }
    assert_eq!(taken.len(), 24);
}
