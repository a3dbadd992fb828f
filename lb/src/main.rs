//! seatgate-lb: the reverse proxy in front of the API instances (DESIGN.md §7).
//!
//! Not built yet: this binary exists so the workspace, the Dockerfile and compose file have
//! their final shape. Until it lands, clients talk to an API instance directly.

fn main() -> std::process::ExitCode {
    eprintln!("seatgate-lb is not available in this build yet; connect to an API instance directly");
    std::process::ExitCode::from(2)
}
