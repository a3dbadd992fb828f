//! seatgate-workers: the background processes of seatgate. The rules they apply live in the
//! `seatgate` library; this binary only picks which loops to run.

fn main() -> std::process::ExitCode {
    let role = std::env::args().nth(1).unwrap_or_default();
    match role.as_str() {
        "payments" | "notifications" | "sweeper" | "all" => {
            eprintln!("seatgate-workers {role}: not available in this build yet");
            std::process::ExitCode::from(2)
        }
        _ => {
            eprintln!("usage: seatgate-workers payments|notifications|sweeper|all");
            std::process::ExitCode::from(2)
        }
    }
}
