//! The catalog: movies, theaters, screens, showtimes, reviews; admin-only writes; caching.

use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{TestApp, book_seat, in_hours};

fn id(v: &Value) -> &str {
    v["id"].as_str().expect("an id")
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn an_admin_creates_reads_updates_and_deletes_a_movie(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let admin = app.admin_token.clone();
    // Create
    let movie = app
        .admin_post(
            "/api/v1/movies",
            &json!({"title": "Alien", "description": "In space.", "genres": ["Horror", "sci-fi"],
                    "duration_minutes": 117, "age_rating": "R", "release_date": "1979-05-25"}),
        )
        .await
        .json_status(201)
        .await;
    assert_eq!(movie["genres"], json!(["horror", "sci-fi"]));
    // Read
    let path = format!("/api/v1/movies/{}", id(&movie));
    assert_eq!(app.get(&path, None).await.json_status(200).await["title"], "Alien");
    // Update
    let patched = app
        .patch(&path, Some(&admin), &json!({"title": "Aliens", "duration_minutes": 137}))
        .await
        .json_status(200)
        .await;
    assert_eq!((patched["title"].as_str(), patched["duration_minutes"].as_i64()), (Some("Aliens"), Some(137)));
    assert_eq!(patched["description"], "In space.");
    // Delete
    app.delete(&path, Some(&admin)).await.assert_status(204);
    app.get(&path, None).await.problem(404).await;
    app.delete(&path, Some(&admin)).await.problem(404).await;
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_patch_is_visible_in_the_next_get_despite_the_cache(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let movie = app.create_movie("Before", 100).await;
    let path = format!("/api/v1/movies/{}", id(&movie));
    // Warm the caches of the item and of the list.
    assert_eq!(app.get(&path, None).await.json_status(200).await["title"], "Before");
    assert_eq!(app.get("/api/v1/movies", None).await.json_status(200).await["items"][0]["title"], "Before");
    app.patch(&path, Some(&app.admin_token.clone()), &json!({"title": "After"})).await.assert_status(200);
    assert_eq!(app.get(&path, None).await.json_status(200).await["title"], "After");
    assert_eq!(app.get("/api/v1/movies", None).await.json_status(200).await["items"][0]["title"], "After");
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn movies_are_filtered_by_text_and_genre_and_paged(db: PgPool) {
    let app = TestApp::spawn(db).await;
    for (title, genre) in [("Alpha 100%", "drama"), ("Beta", "comedy"), ("Gamma", "drama"), ("alphabet", "comedy")] {
        app.admin_post("/api/v1/movies", &json!({"title": title, "duration_minutes": 90, "genres": [genre]}))
            .await
            .assert_status(201);
    }
    let page = app.get("/api/v1/movies?q=ALPHA", None).await.json_status(200).await;
    assert_eq!(page["total"], 2);
    let page = app.get("/api/v1/movies?q=100%25", None).await.json_status(200).await;
    assert_eq!(page["total"], 1, "% is matched literally");
    let page = app.get("/api/v1/movies?genre=Drama", None).await.json_status(200).await;
    assert_eq!(page["total"], 2);
    let page = app.get("/api/v1/movies?per_page=3&page=2", None).await.json_status(200).await;
    assert_eq!((page["total"].as_i64(), page["items"].as_array().map(Vec::len)), (Some(4), Some(1)));
    assert_eq!((page["page"].as_i64(), page["per_page"].as_i64()), (Some(2), Some(3)));
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn invalid_movies_are_422_naming_the_fields(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let res = app.admin_post("/api/v1/movies", &json!({"title": " ", "duration_minutes": 0, "genres": [""]})).await;
    let problem = res.problem(422).await;
    let fields: Vec<_> = problem.errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["title", "genres[0]", "duration_minutes"]);
    let res = app.admin_post("/api/v1/movies", &json!({"duration_minutes": 90})).await;
    assert_eq!(res.problem(422).await.errors[0].field, "title");
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn catalog_writes_are_403_for_a_user_and_401_anonymously(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let user = app.new_user().await;
    let show = app.seed_showtime(&[("A", 2, "standard")], 24).await;
    let movie = format!("/api/v1/movies/{}", show["movie_id"].as_str().expect("id"));
    let theater = format!("/api/v1/theaters/{}", show["theater_id"].as_str().expect("id"));
    let screen = format!("/api/v1/screens/{}", show["screen_id"].as_str().expect("id"));
    let showtime = format!("/api/v1/showtimes/{}", id(&show));
    let writes: Vec<(reqwest::Method, String, Value)> = vec![
        (reqwest::Method::POST, "/api/v1/movies".into(), json!({"title": "x", "duration_minutes": 9})),
        (reqwest::Method::PATCH, movie.clone(), json!({"title": "y"})),
        (reqwest::Method::DELETE, movie, json!({})),
        (reqwest::Method::POST, "/api/v1/theaters".into(), json!({"name": "x", "city": "y"})),
        (reqwest::Method::PATCH, theater.clone(), json!({"name": "y"})),
        (reqwest::Method::DELETE, theater.clone(), json!({})),
        (reqwest::Method::POST, format!("{theater}/screens"), json!({"name": "s", "rows": []})),
        (reqwest::Method::DELETE, screen, json!({})),
        (reqwest::Method::POST, "/api/v1/showtimes".into(), json!({})),
        (reqwest::Method::PATCH, showtime.clone(), json!({})),
        (reqwest::Method::DELETE, showtime, json!({})),
    ];
    for (method, path, body) in writes {
        let p = app.call(method.clone(), &path, Some(&user.token), Some(&body)).await.problem(403).await;
        assert_eq!(p.code, "forbidden", "{method} {path}");
        app.call(method.clone(), &path, None, Some(&body)).await.problem(401).await;
    }
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn theaters_are_managed_and_filtered_by_city(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let admin = app.admin_token.clone();
    let berlin = app.create_theater("Kino A", "Berlin").await;
    app.create_theater("Kino B", "berlin").await;
    app.create_theater("Kino C", "Hamburg").await;
    let page = app.get("/api/v1/theaters?city=BERLIN", None).await.json_status(200).await;
    assert_eq!(page["total"], 2);
    let path = format!("/api/v1/theaters/{}", id(&berlin));
    let patched = app.patch(&path, Some(&admin), &json!({"city": "Potsdam"})).await.json_status(200).await;
    assert_eq!((patched["city"].as_str(), patched["name"].as_str()), (Some("Potsdam"), Some("Kino A")));
    assert_eq!(app.get("/api/v1/theaters?city=berlin", None).await.json_status(200).await["total"], 1);
    app.patch(&path, Some(&admin), &json!({"name": ""})).await.problem(422).await;
    app.delete(&path, Some(&admin)).await.assert_status(204);
    app.get(&path, None).await.problem(404).await;
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_screen_is_created_with_seats_generated_from_its_rows(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let theater = app.create_theater("Kino", "Berlin").await;
    let body = json!({"name": "Saal 1", "rows": [
        {"label": "A", "seats": 3, "category": "standard"},
        {"label": "B", "seats": 2, "category": "vip"}]});
    let screen =
        app.admin_post(&format!("/api/v1/theaters/{}/screens", id(&theater)), &body).await.json_status(201).await;
    assert_eq!(screen["capacity"], 5);
    assert_eq!(screen["categories"], json!(["standard", "vip"]));
    let seats: Vec<String> = screen["seats"]
        .as_array()
        .expect("seats")
        .iter()
        .map(|s| format!("{}{}:{}", s["row"].as_str().unwrap_or(""), s["number"], s["category"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(seats, ["A1:standard", "A2:standard", "A3:standard", "B1:vip", "B2:vip"]);
    // Read back, alone and in the theater's list.
    let fetched = app.get(&format!("/api/v1/screens/{}", id(&screen)), None).await.json_status(200).await;
    assert_eq!(fetched["seats"], screen["seats"]);
    let list = app.get(&format!("/api/v1/theaters/{}/screens", id(&theater)), None).await.json_status(200).await;
    assert_eq!(list[0]["id"], screen["id"]);
    // The same name again is a conflict.
    let dup = app.admin_post(&format!("/api/v1/theaters/{}/screens", id(&theater)), &body).await;
    assert_eq!(dup.problem(409).await.code, "conflict");
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_bad_layout_is_422_naming_each_row(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let theater = app.create_theater("Kino", "Berlin").await;
    let body = json!({"name": "Saal", "rows": [
        {"label": "A", "seats": 0, "category": "standard"},
        {"label": "A", "seats": 5, "category": "VIP!"}]});
    let problem = app.admin_post(&format!("/api/v1/theaters/{}/screens", id(&theater)), &body).await.problem(422).await;
    let fields: Vec<_> = problem.errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["rows[0].seats", "rows[1].label", "rows[1].category"]);
    let empty = json!({"name": "Saal", "rows": []});
    app.admin_post(&format!("/api/v1/theaters/{}/screens", id(&theater)), &empty).await.problem(422).await;
    let unknown = format!("/api/v1/theaters/{}/screens", Uuid::now_v7());
    let ok = json!({"name": "Saal", "rows": [{"label": "A", "seats": 1, "category": "standard"}]});
    app.admin_post(&unknown, &ok).await.problem(404).await;
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_showtime_ends_after_its_movie_and_lists_where_it_plays(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let show = app.seed_showtime(&[("A", 4, "standard"), ("B", 4, "premium")], 48).await;
    assert_eq!(show["status"], "scheduled");
    assert_eq!(show["city"], "Berlin");
    assert_eq!(show["prices"], json!({"premium": 1000, "standard": 1000}));
    let starts = chrono::DateTime::parse_from_rfc3339(show["starts_at"].as_str().expect("start")).expect("rfc3339");
    let ends = chrono::DateTime::parse_from_rfc3339(show["ends_at"].as_str().expect("end")).expect("rfc3339");
    assert_eq!((ends - starts).num_minutes(), 120);
    let fetched = app.get(&format!("/api/v1/showtimes/{}", id(&show)), None).await.json_status(200).await;
    assert_eq!(fetched["id"], show["id"]);
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn an_overlapping_showtime_on_the_same_screen_is_409(db: PgPool) {
    // Arrange: a 120-minute showtime in 48 hours.
    let app = TestApp::spawn(db).await;
    let show = app.seed_showtime(&[("A", 4, "standard")], 48).await;
    let body = |hours: i64| {
        json!({"movie_id": show["movie_id"], "screen_id": show["screen_id"], "starts_at": in_hours(hours),
               "prices": {"standard": 900}, "currency": "EUR"})
    };
    // Act: one hour later overlaps; three hours later does not.
    let overlapping = app.admin_post("/api/v1/showtimes", &body(49)).await;
    let after = app.admin_post("/api/v1/showtimes", &body(51)).await;
    // Assert
    assert_eq!(overlapping.problem(409).await.code, "conflict");
    after.json_status(201).await;
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_cancelled_showtime_frees_its_slot_and_leaves_the_list(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let admin = app.admin_token.clone();
    let show = app.seed_showtime(&[("A", 4, "standard")], 48).await;
    assert_eq!(app.get("/api/v1/showtimes", None).await.json_status(200).await["total"], 1);
    app.delete(&format!("/api/v1/showtimes/{}", id(&show)), Some(&admin)).await.assert_status(204);
    let fetched = app.get(&format!("/api/v1/showtimes/{}", id(&show)), None).await.json_status(200).await;
    assert_eq!(fetched["status"], "cancelled");
    assert_eq!(app.get("/api/v1/showtimes", None).await.json_status(200).await["total"], 0);
    let again = json!({"movie_id": show["movie_id"], "screen_id": show["screen_id"], "starts_at": show["starts_at"],
                       "prices": {"standard": 900}, "currency": "EUR"});
    app.admin_post("/api/v1/showtimes", &again).await.json_status(201).await;
    // Editing a cancelled showtime is a conflict.
    let res = app.patch(&format!("/api/v1/showtimes/{}", id(&show)), Some(&admin), &json!({"currency": "USD"})).await;
    res.problem(409).await;
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn invalid_showtimes_are_422_naming_the_fields(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let show = app.seed_showtime(&[("A", 4, "standard"), ("B", 2, "vip")], 48).await;
    let res = app
        .admin_post(
            "/api/v1/showtimes",
            &json!({"movie_id": Uuid::now_v7(), "screen_id": show["screen_id"], "starts_at": in_hours(-1),
                    "prices": {"standard": -5, "imax": 100}, "currency": "euro"}),
        )
        .await;
    let problem = res.problem(422).await;
    let mut fields: Vec<_> = problem.errors.iter().map(|e| e.field.as_str()).collect();
    fields.sort();
    assert_eq!(fields, ["currency", "movie_id", "prices.imax", "prices.standard", "prices.vip", "starts_at"]);
    let res = app.admin_post("/api/v1/showtimes", &json!({"movie_id": show["movie_id"]})).await;
    res.problem(422).await;
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn a_showtime_is_moved_and_repriced(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let show = app.seed_showtime(&[("A", 4, "standard")], 48).await;
    let path = format!("/api/v1/showtimes/{}", id(&show));
    app.get(&path, None).await.assert_status(200); // cached now
    let moved = app
        .patch(&path, Some(&app.admin_token.clone()), &json!({"starts_at": in_hours(72), "prices": {"standard": 1500}}))
        .await
        .json_status(200)
        .await;
    assert_eq!(moved["prices"]["standard"], 1500);
    assert_eq!(app.get(&path, None).await.json_status(200).await["starts_at"], moved["starts_at"]);
    let res = app.patch(&path, Some(&app.admin_token.clone()), &json!({"starts_at": in_hours(-2)})).await;
    res.problem(422).await;
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn showtimes_are_filtered_by_movie_theater_city_and_date(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let first = app.seed_showtime(&[("A", 2, "standard")], 30).await;
    let second = app.seed_showtime(&[("A", 2, "standard")], 80).await;
    let count = |q: String| {
        let app = &app;
        async move { app.get(&format!("/api/v1/showtimes?{q}"), None).await.json_status(200).await["total"].clone() }
    };
    assert_eq!(count(String::new()).await, 2);
    assert_eq!(count(format!("movie_id={}", first["movie_id"].as_str().expect("id"))).await, 1);
    assert_eq!(count(format!("theater_id={}", second["theater_id"].as_str().expect("id"))).await, 1);
    assert_eq!(count("city=berlin".into()).await, 2);
    assert_eq!(count("city=Paris".into()).await, 0);
    let day = &first["starts_at"].as_str().expect("start")[..10];
    assert_eq!(count(format!("date={day}")).await, 1);
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn screens_and_movies_in_use_cannot_be_deleted(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let admin = app.admin_token.clone();
    let show = app.seed_showtime(&[("A", 2, "standard")], 30).await;
    let screen = format!("/api/v1/screens/{}", show["screen_id"].as_str().expect("id"));
    let movie = format!("/api/v1/movies/{}", show["movie_id"].as_str().expect("id"));
    let theater = format!("/api/v1/theaters/{}", show["theater_id"].as_str().expect("id"));
    assert_eq!(app.delete(&screen, Some(&admin)).await.problem(409).await.code, "conflict");
    assert_eq!(app.delete(&movie, Some(&admin)).await.problem(409).await.code, "conflict");
    assert_eq!(app.delete(&theater, Some(&admin)).await.problem(409).await.code, "conflict");
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn only_a_viewer_with_a_confirmed_booking_may_review_once(db: PgPool) {
    // Arrange
    let app = TestApp::spawn(db.clone()).await;
    let show = app.seed_showtime(&[("A", 2, "standard")], 30).await;
    let movie_id = show["movie_id"].as_str().expect("id");
    let (viewer, stranger) = (app.new_user().await, app.new_user().await);
    let path = format!("/api/v1/movies/{movie_id}/reviews");
    let review = json!({"rating": 5, "comment": "Loved it"});
    // Without a booking: 403.
    assert_eq!(app.post(&path, Some(&viewer.token), &review).await.problem(403).await.code, "forbidden");
    // With a confirmed booking (written directly: bookings come from the payment worker).
    book_seat(&db, viewer.id, show["id"].as_str().expect("id"), None).await;
    // Act
    let created = app.post(&path, Some(&viewer.token), &review).await.json_status(201).await;
    // Assert
    assert_eq!((created["rating"].as_i64(), created["user_name"].as_str()), (Some(5), Some("Test User")));
    assert_eq!(app.post(&path, Some(&viewer.token), &review).await.problem(409).await.code, "conflict");
    app.post(&path, Some(&stranger.token), &review).await.problem(403).await;
    app.post(&path, None, &review).await.problem(401).await;
    let bad = app.post(&path, Some(&viewer.token), &json!({"rating": 6})).await.problem(422).await;
    assert_eq!(bad.errors[0].field, "rating");
    let page = app.get(&path, None).await.json_status(200).await;
    assert_eq!(page["total"], 1);
    app.get(&format!("/api/v1/movies/{}/reviews", Uuid::now_v7()), None).await.problem(404).await;
}
