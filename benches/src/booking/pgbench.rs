//! The pgbench side of `booking`: a scratch database with seatgate's schema, fixture rows as
//! the charge's guard leaves them, and pgbench running the script of [`super::script`] on them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;
use uuid::Uuid;

use super::psql::psql;
use super::script::{SEAT_PRICE, script_text, slot_id};
use super::tally::spread;
use super::{CATEGORY, PAUSE, PGBENCH_SEATS, PgbenchArgs};

/// Transactions/s assumed for sizing the first pgbench phase's fixtures.
const PGBENCH_TPS_GUESS: f64 = 10_000.0;
/// Fixture slots per pgbench client: this many times what the fastest phase so far would use.
const PGBENCH_MARGIN: f64 = 2.5;

/// One pgbench phase.
#[derive(Clone, Debug, Serialize)]
pub struct PgPhase {
    pub round: u32,
    pub duration_secs: f64,
    /// Booking transactions committed.
    pub transactions: u64,
    /// pgbench's own figure (without the initial connection time).
    pub tps: f64,
    pub latency_avg_ms: f64,
    /// Of the per-transaction log.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Transactions pgbench logged as failed.
    pub failed: u64,
    /// Fixture slots (reservation + payment pairs) made ready for each client.
    pub slots_per_client: u64,
    /// pgbench exited non-zero (e.g. an aborted client): what it said.
    pub error: Option<String>,
}

/// The pgbench side: a scratch database with seatgate's schema, fixture rows, and a script
/// that runs the payment worker's booking transaction on them.
///
/// Every id the script touches is computed from a slot number `n`:
/// `<run prefix, 8 hex><kind, 1 hex><n, 23 hex>` (kind 1 reservation, 2 payment, 3 booking,
/// 4 showtime, 5 seat, 6 hold, 7 outbox message). Client `c` of a phase uses the slots
/// `base + c * stride ..= base + c * stride + stride - 1`, one per transaction; slot `n`
/// books seats `4 * (n % per_showtime) .. +3` of showtime `n / per_showtime`.
pub(super) struct Pgbench {
    args: PgbenchArgs,
    url: String,
    prefix: String,
    pub(super) script: PathBuf,
    seats: u64,
    per_showtime: u64,
    user: Uuid,
    movie: Uuid,
    screen: Uuid,
    next_base: u64,
    best_tps: f64,
}

impl Pgbench {
    /// Checks the tools and the scratch database, and writes the script.
    pub(super) async fn new(args: &PgbenchArgs, seats: u64) -> anyhow::Result<Self> {
        for bin in [&args.pgbench_bin, &args.psql_bin] {
            let out = tokio::process::Command::new(bin)
                .arg("--version")
                .kill_on_drop(true)
                .output()
                .await
                .with_context(|| format!("run {bin} --version (is the PostgreSQL client installed?)"))?;
            if !out.status.success() {
                bail!("{bin} --version failed");
            }
        }
        let url = args.pgbench_database_url.clone();
        psql(&args.psql_bin, &url, "select count(*) from bookings").await.with_context(|| {
            format!(
                "the pgbench scratch database {url} is not ready: create it with \
                 `SEATGATE_DATABASE_URL={url} target/release/seatgate migrate` (scripts/bench.sh does)"
            )
        })?;
        tokio::fs::create_dir_all(&args.out_dir).await.with_context(|| format!("create {}", args.out_dir.display()))?;
        let mut pg = Self {
            args: args.clone(),
            url,
            prefix: Uuid::new_v4().simple().to_string()[..8].to_owned(),
            script: PathBuf::new(),
            seats: seats - seats % PGBENCH_SEATS,
            per_showtime: seats / PGBENCH_SEATS,
            user: Uuid::now_v7(),
            movie: Uuid::now_v7(),
            screen: Uuid::now_v7(),
            next_base: 0,
            best_tps: 0.0,
        };
        pg.script = args.out_dir.join(format!("pgbench-booking-{}.sql", pg.prefix));
        tokio::fs::write(&pg.script, script_text(&pg.prefix, pg.user)?)
            .await
            .with_context(|| format!("write {}", pg.script.display()))?;
        Ok(pg)
    }

    fn id(&self, kind: char, n: &str) -> String {
        slot_id(&self.prefix, kind, n)
    }

    /// The rows every slot refers to: a user, a movie, a theater, a screen and its seats.
    pub(super) async fn setup(&self) -> anyhow::Result<()> {
        let theater = Uuid::now_v7();
        let sql = format!(
            "insert into users (id, email, name, password_hash) values ('{user}', 'pgbench-{p}@example.com', 'pgbench', 'none');\n\
             insert into movies (id, title, duration_minutes) values ('{movie}', 'pgbench {p}', 120);\n\
             insert into theaters (id, name, city) values ('{theater}', 'pgbench {p}', 'Benchville');\n\
             insert into screens (id, theater_id, name) values ('{screen}', '{theater}', 'pgbench');\n\
             insert into seats (id, screen_id, row_label, number, category, row_index)\n\
               select {seat}, '{screen}', 'R' || (s / 50 + 1), s % 50 + 1, '{CATEGORY}', s / 50\n\
               from generate_series(0::bigint, {last}) as t(s);\n",
            user = self.user,
            movie = self.movie,
            screen = self.screen,
            p = self.prefix,
            seat = self.id('5', "t.s"),
            last = self.seats - 1,
        );
        psql(&self.args.psql_bin, &self.url, &sql).await.context("pgbench fixtures: catalog")?;
        Ok(())
    }

    /// Showtimes, reservations (`payment_pending`) and payments (`charging`) for `count` slots
    /// from `base`, as checkout and then the charge's guard (`begin_charge`) leave them, the
    /// state the booking transaction starts from; then a checkpoint.
    async fn fixtures(&self, base: u64, count: u64) -> anyhow::Result<()> {
        let (first, last) = (base, base + count - 1);
        let p = self.per_showtime;
        let sql = format!(
            "insert into showtimes (id, movie_id, screen_id, starts_at, ends_at, prices, currency)\n\
               select {showtime}, '{movie}', '{screen}', timestamptz '2031-01-01 00:00:00+00' + k * interval '3 hours',\n\
                 timestamptz '2031-01-01 02:00:00+00' + k * interval '3 hours', '{{\"{CATEGORY}\": {SEAT_PRICE}}}', 'EUR'\n\
               from generate_series({first}::bigint / {p}, {last}::bigint / {p}) as t(k)\n\
               where not exists (select 1 from showtimes where id = {showtime});\n\
             insert into reservations (id, user_id, showtime_id, hold_id, status, amount_minor, currency, deadline)\n\
               select {reservation}, '{user}', {showtime_of_n}, {hold}, 'payment_pending', {amount}, 'EUR', now() + interval '1 day'\n\
               from generate_series({first}::bigint, {last}) as t(n);\n\
             insert into payments (id, reservation_id, attempt, status, amount_minor, currency, payment_token, idempotency_key, deliveries)\n\
               select {payment}, {reservation}, 1, 'charging', {amount}, 'EUR', 'tok_ok', 'pgbench-' || n, 1\n\
               from generate_series({first}::bigint, {last}) as t(n);\n\
             checkpoint;\n",
            showtime = self.id('4', "t.k"),
            showtime_of_n = self.id('4', &format!("t.n / {p}")),
            reservation = self.id('1', "t.n"),
            payment = self.id('2', "t.n"),
            hold = self.id('6', "t.n"),
            movie = self.movie,
            screen = self.screen,
            user = self.user,
            amount = SEAT_PRICE * PGBENCH_SEATS,
        );
        psql(&self.args.psql_bin, &self.url, &sql).await.context("pgbench fixtures: slots")?;
        Ok(())
    }

    /// A checkpoint, so the previous phase's dirty pages are not written during the next one.
    pub(super) async fn checkpoint(&self) -> anyhow::Result<()> {
        psql(&self.args.psql_bin, &self.url, "checkpoint").await.context("checkpoint")?;
        Ok(())
    }

    /// Fixtures for the phase (not measured), then pgbench for `duration`.
    pub(super) async fn phase(&mut self, duration: Duration, round: u32) -> anyhow::Result<PgPhase> {
        let clients = u64::from(self.args.pgbench_clients);
        let tps = if self.best_tps > 0.0 { self.best_tps } else { PGBENCH_TPS_GUESS };
        let stride = (tps * duration.as_secs_f64() * PGBENCH_MARGIN / clients as f64).ceil() as u64 + 100;
        let base = self.next_base;
        self.fixtures(base, stride * clients).await?;
        self.next_base += stride * clients;
        tokio::time::sleep(PAUSE).await;

        let log_prefix = format!("pgbench-{}-r{round}", self.prefix);
        let secs = duration.as_secs().max(1);
        let mut cmd = tokio::process::Command::new(&self.args.pgbench_bin);
        cmd.arg("--no-vacuum")
            .args(["--protocol", "prepared"])
            .args(["--client", &self.args.pgbench_clients.to_string()])
            .args(["--jobs", &self.args.pgbench_jobs.to_string()])
            .args(["--time", &secs.to_string()])
            .arg(format!("--file={}", self.script.display()))
            .args(["--define", "i=0"])
            .args(["--define", &format!("base={base}")])
            .args(["--define", &format!("stride={stride}")])
            .args(["--define", &format!("per_showtime={}", self.per_showtime)])
            .arg("--log")
            .arg(format!("--log-prefix={}", self.args.out_dir.join(&log_prefix).display()))
            .arg(&self.url)
            .kill_on_drop(true);
        let out = tokio::time::timeout(Duration::from_secs(secs + 60), cmd.output())
            .await
            .context("pgbench did not end within its duration + 60 s")?
            .context("run pgbench")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let figure = |prefix: &str| -> Option<f64> {
            stdout.lines().find_map(|l| l.strip_prefix(prefix)).and_then(|rest| {
                rest.trim().split(|c: char| c.is_whitespace() || c == '/').next().and_then(|v| v.parse().ok())
            })
        };
        let mut latencies = Vec::new();
        let mut failed = 0;
        read_pgbench_logs(&self.args.out_dir, &log_prefix, &mut latencies, &mut failed).await?;
        let (p50_ms, p99_ms, max_ms) = spread(&mut latencies);
        let error = (!out.status.success()).then(|| {
            let said: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).take(3).collect();
            format!("pgbench exited with {}: {}", out.status, said.join(" | "))
        });
        let phase = PgPhase {
            round,
            duration_secs: duration.as_secs_f64(),
            transactions: figure("number of transactions actually processed:").map_or(0, |v| v as u64),
            tps: figure("tps =").unwrap_or(0.0),
            latency_avg_ms: figure("latency average =").unwrap_or(0.0),
            p50_ms,
            p99_ms,
            max_ms,
            failed: failed + figure("number of failed transactions:").map_or(0, |v| v as u64),
            slots_per_client: stride,
            error,
        };
        if phase.error.is_none() && phase.tps <= 0.0 {
            bail!("pgbench printed no tps; its output:\n{stdout}\n{stderr}");
        }
        self.best_tps = self.best_tps.max(phase.tps);
        Ok(phase)
    }

    /// What the pgbench phases of this run left in the scratch database: every row the booking
    /// transaction writes or moves.
    pub(super) async fn written(&self) -> anyhow::Result<String> {
        let sql = format!(
            "select (select count(*) from bookings where user_id = '{user}'),\n\
                    (select count(*) from booked_seats bs join bookings b on b.id = bs.booking_id \
                       where b.user_id = '{user}'),\n\
                    (select count(*) from payments p join reservations r on r.id = p.reservation_id \
                       where p.status = 'succeeded' and r.user_id = '{user}'),\n\
                    (select count(*) from reservations where status = 'confirmed' and user_id = '{user}'),\n\
                    (select count(*) from outbox where message_id::text like '{prefix}-7%')",
            user = self.user,
            prefix = self.prefix,
        );
        let row = psql(&self.args.psql_bin, &self.url, &sql).await.context("count pgbench's rows")?;
        let v: Vec<&str> = row.trim().split('|').collect();
        let at = |i: usize| v.get(i).copied().unwrap_or("?");
        Ok(format!(
            "bookings {}, booked_seats {}, payments succeeded {}, reservations confirmed {}, outbox booking events {}",
            at(0),
            at(1),
            at(2),
            at(3),
            at(4),
        ))
    }
}

/// Reads and deletes pgbench's per-transaction logs `<dir>/<prefix>.<pid>[.<thread>]`:
/// the third field is the transaction's time in microseconds, or `failed` / `skipped`.
async fn read_pgbench_logs(dir: &Path, prefix: &str, latencies: &mut Vec<u64>, failed: &mut u64) -> anyhow::Result<()> {
    let mut entries = tokio::fs::read_dir(dir).await.with_context(|| format!("list {}", dir.display()))?;
    let wanted = format!("{prefix}.");
    while let Some(entry) = entries.next_entry().await? {
        if !entry.file_name().to_string_lossy().starts_with(&wanted) {
            continue;
        }
        let text = tokio::fs::read_to_string(entry.path()).await?;
        for line in text.lines() {
            match line.split_whitespace().nth(2).map(str::parse::<u64>) {
                Some(Ok(us)) => latencies.push(us),
                Some(Err(_)) => *failed += 1,
                None => {}
            }
        }
        tokio::fs::remove_file(entry.path()).await?;
    }
    Ok(())
}
