//! The HTTP of one purchase, as a buyer's browser does it: hold, check out (retrying with the
//! same `Idempotency-Key`), then follow the reservation's event stream until it is final (the
//! push, [`crate::push`]); only when the stream fails, poll the reservation (counted apart).

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::tally::{Tally, micros};
use crate::api::{self, chain, problem_code as code, transport_kind};
use crate::push::{self, ReservationView};

/// Attempts of one checkout (the same Idempotency-Key each time) before the user gives up.
const CHECKOUT_ATTEMPTS: u32 = 5;

/// The parts of a problem+json body the bench looks at.
#[derive(Debug, Default, Deserialize)]
struct Problem {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    unavailable_seat_ids: Vec<Uuid>,
}

fn problem(body: &[u8]) -> Problem {
    serde_json::from_slice(body).unwrap_or_default()
}

#[derive(Deserialize)]
struct HoldCreated {
    hold_id: Uuid,
    seat_ids: Vec<Uuid>,
}

#[derive(Deserialize)]
struct CheckoutAccepted {
    reservation_id: Uuid,
}

/// The parts of a seat map a buyer looks at, borrowed from the body: 5,000 buyers read about
/// 10,000 maps of 1,000 seats in a `sellout`, so the client must not allocate per seat (it
/// took half a core of the two when it did).
#[derive(Deserialize)]
pub(super) struct SeatMap<'a> {
    #[serde(borrow)]
    seats: Vec<MapSeat<'a>>,
}

#[derive(Deserialize)]
struct MapSeat<'a> {
    id: &'a str,
    status: &'a str,
}

impl SeatMap<'_> {
    /// The seats shown `available`, and whether every seat is `sold`.
    pub(super) fn available(body: &[u8]) -> Result<(Vec<Uuid>, bool), serde_json::Error> {
        let map: SeatMap<'_> = serde_json::from_slice(body)?;
        let mut all_sold = true;
        let mut available = Vec::new();
        for seat in &map.seats {
            all_sold &= seat.status == "sold";
            if seat.status == "available" {
                available.push(seat.id.parse().map_err(serde::de::Error::custom)?);
            }
        }
        Ok((available, all_sold))
    }
}

/// An answer: status, whole body, and the `Retry-After` of a 429 or 503 (in seconds).
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) body: Vec<u8>,
    pub(super) retry_after: Option<Duration>,
}

/// Sends a request and reads the whole body.
pub(super) async fn send(req: reqwest::RequestBuilder) -> Result<Answer, reqwest::Error> {
    let res = req.send().await?;
    let status = res.status();
    let retry_after = matches!(status, StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE)
        .then(|| res.headers().get(reqwest::header::RETRY_AFTER))
        .flatten()
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = res.bytes().await?.to_vec();
    Ok(Answer { status, body, retry_after })
}

/// How one purchase attempt ended.
#[derive(Debug)]
pub(super) enum Attempt {
    /// Confirmed: the seats are sold to this user.
    Booked,
    /// 409 `seats_unavailable`: nothing was held.
    Conflict(Vec<Uuid>),
    /// The hold was not granted for another reason (recorded as an error).
    HoldFailed,
    /// Held, but no confirmation (recorded as an error); the seats may be held or sold.
    NotConfirmed,
}

/// What a purchase needs besides the user and the seats.
#[derive(Clone)]
pub(super) struct Shop {
    pub(super) client: reqwest::Client,
    pub(super) base: String,
    pub(super) poll: Duration,
    pub(super) confirm_timeout: Duration,
    /// Follow the reservation's event stream after checkout (false: poll only).
    pub(super) push: bool,
}

/// What a buyer asks to hold: seats picked from the seat map, or the best `count` seats together
/// chosen by the server (best-available).
#[derive(Clone, Copy, Debug)]
pub(super) enum Pick<'a> {
    Seats(&'a [Uuid]),
    /// `count` seats together, of the category if one is named.
    Best(u32, Option<&'a str>),
}

impl Shop {
    /// Hold the seats of `pick`, check out with `tok_ok` and a fresh `Idempotency-Key`, then follow the
    /// reservation's stream (or, if it fails, poll the reservation) until it is final or
    /// `confirm_timeout` has passed since the 202.
    pub(super) async fn purchase(&self, token: &str, showtime: Uuid, pick: Pick<'_>, tally: &mut Tally) -> Attempt {
        let hold_url = format!("{}/api/v1/showtimes/{showtime}/holds", self.base);
        let body = match pick {
            Pick::Seats(seats) => json!({"seat_ids": seats}),
            Pick::Best(count, None) => json!({"best_available": {"count": count}}),
            Pick::Best(count, Some(category)) => json!({"best_available": {"count": count, "category": category}}),
        };
        let sent = Instant::now();
        let answer = send(self.client.post(&hold_url).bearer_auth(token).json(&body)).await;
        let (status, body) = match answer {
            Ok(answer) => {
                tally.note(&answer);
                (answer.status, answer.body)
            }
            Err(e) => {
                tally.error(format!("hold: transport error ({})", transport_kind(&e)), || chain(&e));
                return Attempt::HoldFailed;
            }
        };
        tally.hold_us.push(micros(sent.elapsed()));
        let (hold_id, held_seats) = match status {
            StatusCode::CREATED => match serde_json::from_slice::<HoldCreated>(&body) {
                Ok(h) => (h.hold_id, h.seat_ids),
                Err(_) => {
                    tally.error("hold 201 without hold_id", || String::from_utf8_lossy(&body).into_owned());
                    return Attempt::HoldFailed;
                }
            },
            StatusCode::CONFLICT => {
                let p = problem(&body);
                if p.code.as_deref() == Some("seats_unavailable") {
                    tally.conflicts += 1;
                    return Attempt::Conflict(p.unavailable_seat_ids);
                }
                tally.error(format!("hold 409 {}", p.code.as_deref().unwrap_or("-")), || {
                    format!("hold 409: {}", api::truncate(&String::from_utf8_lossy(&body), 300))
                });
                return Attempt::HoldFailed;
            }
            other => {
                tally.error(format!("hold {} {}", other.as_u16(), code(&body)), || {
                    format!("hold {other}: {}", api::truncate(&String::from_utf8_lossy(&body), 300))
                });
                return Attempt::HoldFailed;
            }
        };
        tally.holds += 1;

        // A payment page retries a checkout the API could not take (503, 429, a dropped
        // connection) with the same Idempotency-Key, after the Retry-After it was given: the key
        // makes the retry safe, and giving up would strand the hold until it expires.
        let checkout_url = format!("{}/api/v1/holds/{hold_id}/checkout", self.base);
        let key = Uuid::new_v4().to_string();
        let sent = Instant::now();
        let mut attempt = 0;
        let reservation_id = loop {
            attempt += 1;
            let answer = send(
                self.client
                    .post(&checkout_url)
                    .bearer_auth(token)
                    .header("Idempotency-Key", &key)
                    .json(&json!({"payment_token": "tok_ok"})),
            )
            .await;
            if let Ok(answer) = &answer {
                tally.note(answer);
            }
            let retryable = match answer.map(|a| (a.status, a.body)) {
                Ok((StatusCode::ACCEPTED, body)) => match serde_json::from_slice::<CheckoutAccepted>(&body) {
                    Ok(c) => break c.reservation_id,
                    Err(_) => {
                        tally.error("checkout 202 without reservation_id", || {
                            String::from_utf8_lossy(&body).into_owned()
                        });
                        return Attempt::NotConfirmed;
                    }
                },
                Ok((status, body)) => {
                    tally.error(format!("checkout {} {}", status.as_u16(), code(&body)), || {
                        format!("checkout {status}: {}", api::truncate(&String::from_utf8_lossy(&body), 300))
                    });
                    matches!(status, StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS)
                        || (status == StatusCode::CONFLICT && code(&body) == "conflict")
                }
                Err(e) => {
                    tally.error(format!("checkout: transport error ({})", transport_kind(&e)), || chain(&e));
                    true
                }
            };
            if !retryable || attempt >= CHECKOUT_ATTEMPTS {
                return Attempt::NotConfirmed;
            }
            tally.checkout_retries += 1;
            let wait = tally.retry_after.take().unwrap_or(Duration::from_millis(500));
            tokio::time::sleep(wait).await;
        };
        let accepted = Instant::now();
        tally.checkout_us.push(micros(accepted.duration_since(sent)));
        tally.checkouts += 1;

        if self.push {
            tally.pushes += 1;
            match push::follow(&self.client, &self.base, token, reservation_id, self.confirm_timeout).await {
                Ok(view) => return settled(&view, reservation_id, accepted, &held_seats, tally),
                Err(e) => {
                    // Not an error of the sale: the buyer polls instead, as the web page does.
                    tally.push_fallbacks += 1;
                    *tally.push_failures.entry(e.kind()).or_default() += 1;
                }
            }
        }
        let poll_url = format!("{}/api/v1/reservations/{reservation_id}", self.base);
        loop {
            let wait = tally.retry_after.take().map_or(self.poll, |asked| asked.max(self.poll));
            tokio::time::sleep(wait).await;
            if accepted.elapsed() > self.confirm_timeout {
                tally.error("reservation not final within --confirm-timeout-secs", || {
                    format!("reservation {reservation_id} still not final after {:?}", self.confirm_timeout)
                });
                return Attempt::NotConfirmed;
            }
            tally.polls += 1;
            let (status, body) = match send(self.client.get(&poll_url).bearer_auth(token)).await {
                Ok(answer) => {
                    tally.note(&answer);
                    (answer.status, answer.body)
                }
                Err(e) => {
                    tally.error(format!("poll: transport error ({})", transport_kind(&e)), || chain(&e));
                    continue;
                }
            };
            if status != StatusCode::OK {
                tally.error(format!("poll {} {}", status.as_u16(), code(&body)), || {
                    format!("poll {status}: {}", api::truncate(&String::from_utf8_lossy(&body), 300))
                });
                continue;
            }
            let view = match serde_json::from_slice::<ReservationView>(&body) {
                Ok(view) => view,
                Err(_) => {
                    tally.error("poll 200 without status", || String::from_utf8_lossy(&body).into_owned());
                    continue;
                }
            };
            if view.is_final() {
                return settled(&view, reservation_id, accepted, &held_seats, tally);
            }
        }
    }
}

/// Records a final reservation status (from the stream or a poll).
fn settled(
    view: &ReservationView,
    reservation_id: Uuid,
    accepted: Instant,
    seats: &[Uuid],
    tally: &mut Tally,
) -> Attempt {
    if view.status == "confirmed" {
        tally.confirm_us.push(micros(accepted.elapsed()));
        tally.bookings += 1;
        tally.seats += seats.len() as u64;
        return Attempt::Booked;
    }
    let other = &view.status;
    tally.error(format!("reservation {other}"), || {
        format!("reservation {reservation_id} {other}: {}", view.failure_reason.as_deref().unwrap_or("-"))
    });
    Attempt::NotConfirmed
}
