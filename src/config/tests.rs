//! Unit tests of the configuration: defaults, parsing, refusals naming their variable.
use super::*;

#[test]
fn defaults_point_at_local_services() {
    let config = Config::from_source(&[]).expect("defaults are valid");
    assert_eq!(config.http.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(config.database.url.expose(), DEFAULT_DATABASE_URL);
    assert_eq!(config.holds.ttl, Duration::from_secs(300));
    assert_eq!(config.holds.max_seats_per_user, 10);
    assert_eq!(config.log_format, LogFormat::Pretty);
    assert_eq!(config.live.max_connections, 10_000);
    assert_eq!(config.live.heartbeat, Duration::from_secs(15));
    assert!(config.auth.jwt_secret_generated);
    assert!(config.auth.admin.is_none());
}

#[test]
fn a_bad_value_names_the_variable() {
    let err = Config::from_source(&[("SEATGATE_HOLD_TTL_SECS", "soon")]).expect_err("not a number");
    assert!(format!("{err:#}").contains("SEATGATE_HOLD_TTL_SECS"), "{err:#}");

    let err = Config::from_source(&[("SEATGATE_LOG_FORMAT", "xml")]).expect_err("unknown format");
    assert!(format!("{err:#}").contains("SEATGATE_LOG_FORMAT"), "{err:#}");

    let err = Config::from_source(&[("SEATGATE_LISTEN", "localhost")]).expect_err("no port");
    assert!(format!("{err:#}").contains("SEATGATE_LISTEN"), "{err:#}");

    let err = Config::from_source(&[("SEATGATE_REDIS_URL", "http://x")]).expect_err("wrong scheme");
    assert!(format!("{err:#}").contains("SEATGATE_REDIS_URL"), "{err:#}");

    let err = Config::from_source(&[("SEATGATE_HOLD_TTL_SECS", "0")]).expect_err("zero");
    assert!(format!("{err:#}").contains("SEATGATE_HOLD_TTL_SECS"), "{err:#}");
}

#[test]
fn the_workers_metrics_listener_defaults_to_loopback_and_can_be_turned_off() {
    let default = Config::from_source(&[]).expect("defaults are valid");
    assert_eq!(default.workers.metrics_listen, Some(SocketAddr::from(([127, 0, 0, 1], 9100))));
    let off = Config::from_source(&[("SEATGATE_WORKERS_METRICS_LISTEN", "off")]).expect("off is valid");
    assert_eq!(off.workers.metrics_listen, None);
    let err = Config::from_source(&[("SEATGATE_WORKERS_METRICS_LISTEN", "9100")]).expect_err("no host");
    assert!(format!("{err:#}").contains("SEATGATE_WORKERS_METRICS_LISTEN"), "{err:#}");
}

#[test]
fn a_short_jwt_secret_is_refused() {
    let err = Config::from_source(&[("SEATGATE_JWT_SECRET", "short")]).expect_err("too short");
    assert!(format!("{err:#}").contains("SEATGATE_JWT_SECRET"));
}

#[test]
fn an_admin_needs_both_email_and_password() {
    let err = Config::from_source(&[("SEATGATE_ADMIN_EMAIL", "a@b.c")]).expect_err("no password");
    assert!(format!("{err:#}").contains("SEATGATE_ADMIN_PASSWORD"));
    let ok =
        Config::from_source(&[("SEATGATE_ADMIN_EMAIL", "a@b.c"), ("SEATGATE_ADMIN_PASSWORD", "pw")]).expect("both set");
    assert_eq!(ok.auth.admin.expect("admin").email, "a@b.c");
}

#[test]
fn ticket_keys_are_read_as_hex_or_base64_and_a_bad_one_names_its_variable() {
    let seed = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    let public = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    let verify = format!("old:{public}, older:11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo");
    let config = Config::from_source(&[
        ("SEATGATE_TICKET_SIGNING_KEY", seed),
        ("SEATGATE_TICKET_KEY_ID", "2026-12"),
        ("SEATGATE_TICKET_VERIFY_KEYS", verify.as_str()),
    ])
    .expect("valid");
    assert!(!config.tickets.signing_key_generated);
    assert_eq!(hex::encode(config.tickets.signing_seed.expose()), seed);
    assert_eq!(config.tickets.key_id.as_deref(), Some("2026-12"));
    assert_eq!(config.tickets.verify_keys.len(), 2);
    assert_eq!(config.tickets.verify_keys[0].1, config.tickets.verify_keys[1].1);
    assert!(!format!("{config:?}").contains(seed));

    for (key, value) in [
        ("SEATGATE_TICKET_SIGNING_KEY", "too-short"),
        ("SEATGATE_TICKET_KEY_ID", "has.a.dot"),
        ("SEATGATE_TICKET_VERIFY_KEYS", "nokid"),
    ] {
        let err = Config::from_source(&[(key, value)]).expect_err("refused");
        assert!(format!("{err:#}").contains(key), "{err:#}");
    }
    assert!(Config::from_source(&[]).expect("defaults").tickets.signing_key_generated);
}

#[test]
fn the_compose_files_placeholder_secrets_are_refused_outside_demo_mode() {
    let err = Config::from_source(&[("SEATGATE_JWT_SECRET", PLACEHOLDER_JWT_SECRET)]).expect_err("placeholder");
    assert!(format!("{err:#}").contains("SEATGATE_JWT_SECRET"), "{err:#}");
    let admin = [("SEATGATE_ADMIN_EMAIL", "a@b.cd"), ("SEATGATE_ADMIN_PASSWORD", "admin-password")];
    let err = Config::from_source(&admin).expect_err("placeholder password");
    assert!(format!("{err:#}").contains("SEATGATE_ADMIN_PASSWORD"), "{err:#}");
    let demo = [
        ("SEATGATE_JWT_SECRET", PLACEHOLDER_JWT_SECRET),
        ("SEATGATE_ADMIN_EMAIL", "a@b.cd"),
        ("SEATGATE_ADMIN_PASSWORD", "admin-password"),
        ("SEATGATE_DEMO", "1"),
    ];
    assert!(Config::from_source(&demo).expect("demo mode accepts them").demo);
    let err = Config::from_source(&[("SEATGATE_DEMO", "maybe")]).expect_err("not a flag");
    assert!(format!("{err:#}").contains("SEATGATE_DEMO"), "{err:#}");
}

#[test]
fn promotion_of_an_existing_account_is_off_unless_asked_for() {
    assert!(!Config::from_source(&[]).expect("defaults").auth.admin_promote);
    assert!(Config::from_source(&[("SEATGATE_ADMIN_PROMOTE", "true")]).expect("flag").auth.admin_promote);
}

#[test]
fn secrets_do_not_show_in_debug_output() {
    let config = Config::from_source(&[("SEATGATE_JWT_SECRET", "0123456789abcdef0123456789abcdef-x")]).expect("valid");
    assert!(!format!("{config:?}").contains("0123456789abcdef"));
}

#[test]
fn cluster_nodes_select_cluster_mode_and_a_bad_node_names_the_variable() {
    let single = Config::from_source(&[]).expect("defaults are valid");
    assert!(single.redis.cluster_nodes.is_empty());
    let nodes = "redis://127.0.0.1:7000, redis://127.0.0.1:7001,,rediss://10.0.0.3:7002";
    let cluster = Config::from_source(&[("SEATGATE_REDIS_CLUSTER_NODES", nodes)]).expect("valid");
    let seeds: Vec<&str> = cluster.redis.cluster_nodes.iter().map(Secret::expose).collect();
    assert_eq!(seeds, ["redis://127.0.0.1:7000", "redis://127.0.0.1:7001", "rediss://10.0.0.3:7002"]);
    for bad in ["127.0.0.1:7000", "redis://127.0.0.1:7000,http://x", "redis://"] {
        let err = Config::from_source(&[("SEATGATE_REDIS_CLUSTER_NODES", bad)]).expect_err("refused");
        assert!(format!("{err:#}").contains("SEATGATE_REDIS_CLUSTER_NODES"), "{bad}: {err:#}");
    }
}
