//! `ticket-verify`: how many signed tickets one core verifies per second offline, the way a door
//! scanner does with the check-in bundle's keys (`seatgate::ledger::ticket::verify_with`), with no
//! server, database or network involved. Tickets are distinct (one booking each), signed with
//! one of the rotation's keys, and checked against the full key list, as at a real door.

use std::time::{Duration, Instant};

use chrono::Utc;
use clap::Args;
use seatgate::config::{SecretKey, TicketConfig};
use seatgate::ledger::ticket::{TicketKeys, verify_with};
use uuid::Uuid;

#[derive(Args, Debug, Clone)]
pub struct TicketVerifyArgs {
    /// Distinct tickets verified round-robin.
    #[arg(long, default_value_t = 10_000)]
    pub tickets: usize,
    /// Seats per ticket (the payload grows 16 bytes per seat).
    #[arg(long, default_value_t = 2)]
    pub seats: usize,
    /// Measured rounds; the median is reported.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Seconds per round.
    #[arg(long, default_value_t = 3)]
    pub seconds: u64,
    /// Older public keys in the bundle besides the signing one (rotation).
    #[arg(long, default_value_t = 1)]
    pub old_keys: usize,
}

fn keys(seed: u8, kid: &str, verify: Vec<(String, [u8; 32])>) -> TicketKeys {
    TicketKeys::new(&TicketConfig {
        signing_seed: SecretKey::new([seed; 32]),
        signing_key_generated: false,
        key_id: Some(kid.to_owned()),
        verify_keys: verify,
    })
}

/// Runs on the calling thread only: the figure is per core.
#[expect(clippy::print_stdout, reason = "the report is the program's output")]
pub fn run(args: TicketVerifyArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.tickets > 0 && args.rounds > 0 && args.seconds > 0, "tickets, rounds and seconds must be > 0");
    let old: Vec<TicketKeys> =
        (0..args.old_keys).map(|i| keys(100 + i as u8, &format!("old{i}"), Vec::new())).collect();
    let verify = old.iter().map(|k| (k.kid().to_owned(), k.verifying_keys()[0].1.to_bytes())).collect();
    let current = keys(1, "current", verify);
    let showtime = Uuid::now_v7();
    let tickets: Vec<String> = (0..args.tickets)
        .map(|_| {
            let seats: Vec<Uuid> = (0..args.seats).map(|_| Uuid::now_v7()).collect();
            current.sign(Uuid::now_v7(), showtime, &seats, Utc::now())
        })
        .collect();
    let bundle = current.verifying_keys();
    eprintln!(
        "{} tickets of {} seats ({} bytes each), {} keys in the bundle",
        tickets.len(),
        args.seats,
        tickets[0].len(),
        bundle.len()
    );
    let mut rates = Vec::with_capacity(args.rounds);
    for round in 1..=args.rounds {
        let deadline = Instant::now() + Duration::from_secs(args.seconds);
        let started = Instant::now();
        let mut verified = 0u64;
        while Instant::now() < deadline {
            // Check the clock every 256 verifications, so reading it costs nothing measurable.
            for _ in 0..256 {
                let claims = verify_with(bundle, &tickets[verified as usize % tickets.len()]);
                anyhow::ensure!(claims.is_ok(), "a valid ticket failed verification: {claims:?}");
                verified += 1;
            }
        }
        let rate = verified as f64 / started.elapsed().as_secs_f64();
        println!(
            "round {round:>2}  verifications/s {rate:>10.0}  ({verified} in {:.2} s)",
            started.elapsed().as_secs_f64()
        );
        rates.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    println!();
    println!("ticket-verify: median {median:.0} verifications/s on one core ({:.1} us each)", 1e6 / median);
    println!(
        "{}",
        serde_json::json!({
            "scenario": "ticket-verify",
            "verifications_per_sec": median.round(),
            "rounds": args.rounds,
            "seconds_per_round": args.seconds,
            "seats_per_ticket": args.seats,
            "keys_in_bundle": bundle.len(),
        })
    );
    Ok(())
}
