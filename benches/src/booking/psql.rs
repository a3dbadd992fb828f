//! `psql` as a subprocess: fixtures of the pgbench phases and the sellout's verification.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::AsyncWriteExt;

/// Bound of one `psql` call (fixtures of a pgbench phase included).
pub(super) const PSQL_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs SQL through `psql` (on stdin, stop at the first error) and returns its unaligned,
/// tuples-only output.
pub(super) async fn psql(bin: &str, url: &str, sql: &str) -> anyhow::Result<String> {
    let mut child = tokio::process::Command::new(bin)
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("run {bin} (is the PostgreSQL client installed?)"))?;
    let mut stdin = child.stdin.take().context("psql's stdin")?;
    let sql = sql.to_owned();
    let run = async move {
        let write = async move {
            stdin.write_all(sql.as_bytes()).await?;
            stdin.shutdown().await
        };
        let (written, out) = tokio::join!(write, child.wait_with_output());
        written.context("write to psql")?;
        out.context("wait for psql")
    };
    let out = tokio::time::timeout(PSQL_TIMEOUT, run)
        .await
        .with_context(|| format!("psql took longer than {} s", PSQL_TIMEOUT.as_secs()))??;
    if !out.status.success() {
        bail!("psql failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
