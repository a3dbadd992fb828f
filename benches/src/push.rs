//! How the benches' buyers learn the outcome of a checkout: they follow the reservation's event
//! stream (`GET /api/v1/reservations/{id}/events`) until it reports a final status, as the web
//! page does, instead of polling `GET /api/v1/reservations/{id}`. A stream that fails (an error
//! status, a transport error, an end while still pending) is a [`PushError`]: the callers fall
//! back to polling and count it apart.

use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;
use uuid::Uuid;

/// The parts of a reservation view the benches look at.
#[derive(Clone, Debug, Deserialize)]
pub struct ReservationView {
    pub status: String,
    #[serde(default)]
    pub failure_reason: Option<String>,
}

impl ReservationView {
    /// Anything but `payment_pending`.
    pub fn is_final(&self) -> bool {
        self.status != "payment_pending"
    }
}

/// Why a stream gave no final status.
#[derive(Debug)]
pub enum PushError {
    /// The stream was refused (e.g. 429 or 503 under the stream caps).
    Status(StatusCode),
    /// Connect, read or `timeout` failed.
    Transport(reqwest::Error),
    /// The stream ended while the reservation was still pending.
    Ended,
    /// A frame's data was not a reservation.
    BadFrame,
}

impl PushError {
    /// A short kind for error tables (`push 503`, `push transport`, `push ended`).
    pub fn kind(&self) -> String {
        match self {
            Self::Status(status) => format!("push {}", status.as_u16()),
            Self::Transport(e) => format!("push transport ({})", crate::api::transport_kind(e)),
            Self::Ended => "push ended while pending".to_owned(),
            Self::BadFrame => "push bad frame".to_owned(),
        }
    }
}

/// Follows reservation `id`'s stream until its view is final (at most `timeout` in all).
pub async fn follow(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    id: Uuid,
    timeout: Duration,
) -> Result<ReservationView, PushError> {
    let url = format!("{}/api/v1/reservations/{id}/events", base.trim_end_matches('/'));
    let mut res = client
        .get(url)
        .bearer_auth(token)
        .header("Accept", "text/event-stream")
        .timeout(timeout)
        .send()
        .await
        .map_err(PushError::Transport)?;
    if res.status() != StatusCode::OK {
        return Err(PushError::Status(res.status()));
    }
    let mut buf = Vec::new();
    loop {
        while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
            let frame: Vec<u8> = buf.drain(..end + 2).collect();
            if let Some(view) = data_of(&frame)?
                && view.is_final()
            {
                return Ok(view);
            }
        }
        match res.chunk().await.map_err(PushError::Transport)? {
            Some(bytes) => buf.extend_from_slice(&bytes),
            None => return Err(PushError::Ended),
        }
    }
}

/// The reservation in one SSE frame's `data:` line; `None` for a heartbeat.
fn data_of(frame: &[u8]) -> Result<Option<ReservationView>, PushError> {
    let text = std::str::from_utf8(frame).map_err(|_| PushError::BadFrame)?;
    match text.lines().find_map(|l| l.strip_prefix("data: ")) {
        Some(data) => serde_json::from_str(data).map(Some).map_err(|_| PushError::BadFrame),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeats_carry_no_view_and_events_carry_one() {
        assert!(data_of(b": keep-alive\n\n").expect("a heartbeat").is_none());
        let frame = b"id: 3\nevent: failed\ndata: {\"status\":\"failed\",\"failure_reason\":\"payment declined\"}\n\n";
        let view = data_of(frame).expect("decodes").expect("a view");
        assert!(view.is_final());
        assert_eq!(view.failure_reason.as_deref(), Some("payment declined"));
        assert!(matches!(data_of(b"event: x\ndata: [1]\n\n"), Err(PushError::BadFrame)));
    }
}
