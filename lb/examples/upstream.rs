//! A tiny HTTP upstream for benchmarks and manual trials of seatgate-lb (not part of the lb).
//!
//! `cargo run --release -p seatgate-lb --example upstream -- 127.0.0.1:18081 a` serves
//! `GET /health/live` and `/health/ready` as `{"status":"ok","instance":"a"}` and any other path as
//! a small JSON echo of the path, on one thread, with keep-alive. Stops on SIGTERM/Ctrl-C.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = match args.next().map(|a| a.parse()) {
        Some(Ok(addr)) => addr,
        _ => {
            eprintln!("usage: upstream LISTEN_ADDR [NAME]");
            return std::process::ExitCode::from(2);
        }
    };
    let name: Arc<str> = args.next().unwrap_or_else(|| "upstream".to_owned()).into();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    runtime.block_on(async move {
        let listener = TcpListener::bind(addr).await.expect("the listen address is free");
        eprintln!("upstream {name} listening on {}", listener.local_addr().expect("bound address"));
        let health: Bytes = serde_json::json!({ "status": "ok", "instance": &*name }).to_string().into();
        loop {
            let (stream, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(_) => continue,
                },
                _ = tokio::signal::ctrl_c() => break,
            };
            let _ = stream.set_nodelay(true);
            let (health, name) = (health.clone(), Arc::clone(&name));
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let body = match req.uri().path() {
                        "/health/live" | "/health/ready" => health.clone(),
                        path => Bytes::from(serde_json::json!({ "instance": &*name, "path": path }).to_string()),
                    };
                    async move {
                        let mut res = Response::new(Full::new(body));
                        res.headers_mut()
                            .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
                        Ok::<_, Infallible>(res)
                    }
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    std::process::ExitCode::SUCCESS
}
