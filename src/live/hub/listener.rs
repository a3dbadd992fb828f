//! The hub's subscription task: on one Redis a pattern subscription on a dedicated connection,
//! on a Redis Cluster sharded subscriptions to each watched channel (both PING); both dispatch
//! to the streams of this process and reconnect, with a resync, when the connection is lost.

use super::*;

/// Why one subscription ended.
enum Ended {
    Stopped,
    Lost(String),
}

/// The subscription task: connect, subscribe, dispatch, reconnect, until stopped.
pub(super) async fn listen(inner: Arc<Inner>) {
    if inner.sharded {
        return listen_sharded(inner).await;
    }
    let mut generation = 0u64;
    let mut backoff = Duration::from_millis(100);
    loop {
        if inner.stop.is_cancelled() {
            break;
        }
        match connect(&inner).await {
            Ok((sink, stream)) => {
                generation += 1;
                backoff = Duration::from_millis(100);
                if generation > 1 {
                    tracing::info!(generation, "redis pub/sub subscription restored; live streams resync");
                    metrics::counter!("seatgate_sse_resubscribed_total").increment(1);
                }
                // Resync before announcing the generation: a stream whose snapshot is taken
                // after the announcement skips this resync (its generation is not older).
                inner.broadcast_all(Update::Resync(generation));
                inner.connected.send_replace(Some(generation));
                let ended = run(&inner, sink, stream).await;
                inner.connected.send_replace(None);
                match ended {
                    Ended::Stopped => break,
                    Ended::Lost(why) => tracing::warn!(reason = %why, "redis pub/sub subscription lost, reconnecting"),
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot subscribe to seat events, retrying"),
        }
        if !back_off(&inner, &mut backoff).await {
            break;
        }
    }
    inner.connected.send_replace(None);
    inner.started.store(false, Ordering::SeqCst);
}

/// Waits `backoff` before the next try and doubles it (2 s at most); `false` if stopped meanwhile.
async fn back_off(inner: &Inner, backoff: &mut Duration) -> bool {
    tokio::select! {
        _ = inner.stop.cancelled() => return false,
        _ = tokio::time::sleep(*backoff) => {}
    }
    *backoff = (*backoff * 2).min(Duration::from_secs(2));
    true
}

async fn connect(inner: &Inner) -> anyhow::Result<(PubSubSink, PubSubStream)> {
    let timeout = inner.redis.timeout();
    let patterns =
        [inner.keys.events_pattern(), inner.keys.reservation_events_pattern(), inner.keys.queue_events_pattern()];
    let subscribe = async {
        let (mut sink, stream) = inner.redis.client().get_async_pubsub().await?.split();
        sink.psubscribe(&patterns).await?;
        Ok::<_, redis::RedisError>((sink, stream))
    };
    match tokio::time::timeout(timeout, subscribe).await {
        Ok(result) => Ok(result?),
        Err(_) => anyhow::bail!("timed out after {timeout:?}"),
    }
}

/// Dispatches messages until the connection ends, stops answering PING, or the hub stops.
async fn run(inner: &Inner, mut sink: PubSubSink, mut stream: PubSubStream) -> Ended {
    let timeout = inner.redis.timeout();
    // PING at the heartbeat pace: a half-open connection is noticed within about one period.
    let period = inner.config.heartbeat.max(Duration::from_millis(500));
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            _ = inner.stop.cancelled() => return Ended::Stopped,
            msg = stream.next() => match msg {
                Some(msg) => inner.dispatch(&msg),
                None => return Ended::Lost("connection closed".into()),
            },
            _ = ping.tick() => match tokio::time::timeout(timeout, sink.ping::<redis::Value>()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Ended::Lost(e.to_string()),
                Err(_) => return Ended::Lost(format!("no PING reply within {timeout:?}")),
            },
        }
    }
}

/// The sharded subscription task (a Redis Cluster): connect, subscribe to every watched
/// showtime, then follow the set of watched showtimes and dispatch, until stopped.
async fn listen_sharded(inner: Arc<Inner>) {
    let mut generation = 0u64;
    let mut backoff = Duration::from_millis(100);
    while !inner.stop.is_cancelled() {
        let (pushes, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let timeout = inner.redis.timeout();
        match tokio::time::timeout(timeout, inner.redis.sharded_subscriber(pushes)).await {
            Ok(Some(Ok(mut conn))) => {
                let mut subscribed = HashSet::new();
                match sync_subscriptions(&inner, &mut conn, &mut subscribed).await {
                    Ok(()) => {
                        generation += 1;
                        backoff = Duration::from_millis(100);
                        if generation > 1 {
                            tracing::info!(
                                generation,
                                "sharded seat event subscriptions restored; live streams resync"
                            );
                            metrics::counter!("seatgate_sse_resubscribed_total").increment(1);
                        }
                        inner.broadcast_all(Update::Resync(generation));
                        inner.connected.send_replace(Some(generation));
                        let ended = run_sharded(&inner, &mut conn, &mut rx, &mut subscribed).await;
                        inner.connected.send_replace(None);
                        inner.subscribed.send_replace(HashSet::new());
                        match ended {
                            Ended::Stopped => break,
                            Ended::Lost(why) => {
                                tracing::warn!(reason = %why, "sharded seat event subscriptions lost, reconnecting")
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot subscribe to sharded seat events, retrying"),
                }
            }
            Ok(Some(Err(e))) => tracing::warn!(error = %e, "cannot connect for sharded seat events, retrying"),
            Ok(None) => {
                tracing::error!("sharded seat events need a Redis Cluster");
                break;
            }
            Err(_) => tracing::warn!("connecting for sharded seat events timed out, retrying"),
        }
        if !back_off(&inner, &mut backoff).await {
            break;
        }
    }
    inner.connected.send_replace(None);
    inner.started.store(false, Ordering::SeqCst);
}

/// SSUBSCRIBEs to each watched channel (a showtime's seat events, a reservation's changes) not
/// yet subscribed, SUNSUBSCRIBEs from each no longer watched, and publishes the subscribed set
/// (what `wait_connected` waits for).
async fn sync_subscriptions(
    inner: &Inner,
    conn: &mut redis::cluster_async::ClusterConnection,
    subscribed: &mut HashSet<Topic>,
) -> anyhow::Result<()> {
    let wanted: HashSet<Topic> = match inner.channels.lock() {
        Ok(channels) => channels.keys().copied().collect(),
        Err(_) => HashSet::new(),
    };
    let timeout = inner.redis.timeout();
    let new: Vec<Topic> = wanted.difference(subscribed).copied().collect();
    for topic in new {
        match tokio::time::timeout(timeout, conn.ssubscribe(inner.channel_of(topic))).await {
            Ok(result) => result?,
            Err(_) => anyhow::bail!("SSUBSCRIBE timed out after {timeout:?}"),
        }
        subscribed.insert(topic);
    }
    let gone: Vec<Topic> = subscribed.difference(&wanted).copied().collect();
    for topic in gone {
        match tokio::time::timeout(timeout, conn.sunsubscribe(inner.channel_of(topic))).await {
            Ok(result) => result?,
            Err(_) => anyhow::bail!("SUNSUBSCRIBE timed out after {timeout:?}"),
        }
        subscribed.remove(&topic);
    }
    inner.subscribed.send_replace(subscribed.clone());
    Ok(())
}

/// Dispatches sharded messages and follows the watched showtimes until a node's connection is
/// lost or stops answering PING (changes published meanwhile are gone: start over, with a
/// resync) or the hub stops.
async fn run_sharded(
    inner: &Inner,
    conn: &mut redis::cluster_async::ClusterConnection,
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<redis::PushInfo>,
    subscribed: &mut HashSet<Topic>,
) -> Ended {
    let timeout = inner.redis.timeout();
    // As on one Redis: PING at the heartbeat pace. A cluster PING goes to every master on the
    // connections that carry the SSUBSCRIBEs, so a node that went silent without closing its
    // connection (no disconnection push) is noticed within about one period.
    let period = inner.config.heartbeat.max(Duration::from_millis(500));
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            _ = inner.stop.cancelled() => return Ended::Stopped,
            _ = ping.tick() => match tokio::time::timeout(timeout, redis::cmd("PING").query_async::<redis::Value>(&mut *conn)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Ended::Lost(format!("PING failed: {e}")),
                Err(_) => return Ended::Lost(format!("no PING reply within {timeout:?}")),
            },
            _ = inner.changed.notified() => {
                if let Err(e) = sync_subscriptions(inner, conn, subscribed).await {
                    return Ended::Lost(e.to_string());
                }
            }
            push = rx.recv() => match push {
                None => return Ended::Lost("connection closed".into()),
                Some(push) => match push.kind {
                    redis::PushKind::Disconnection => return Ended::Lost("a node's connection was lost".into()),
                    redis::PushKind::SMessage => {
                        if let Some(msg) = redis::Msg::from_push_info(push) {
                            inner.dispatch(&msg);
                        }
                    }
                    _ => {}
                },
            },
        }
    }
}
