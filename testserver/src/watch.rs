//! Watch streams: initial events, replay from a resourceVersion, live events, bookmarks, and the ways a
//! watch ends (timeout, shutdown, [`crate::TestServer::end_watches`], a lagging client).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc::Sender;

use crate::error::ApiError;
use crate::http::Shared;
use crate::registry::ResourceType;
use crate::store::{Event, EventKind, Filter, present};
use crate::view::View;

/// Watches without `timeoutSeconds` end after this long (the API server picks 30-60 minutes).
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);

/// How often a watch with `allowWatchBookmarks=true` gets a BOOKMARK unless a test sets otherwise
/// (the API server sends them about once a minute).
pub const DEFAULT_BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);

/// How long before its timeout a watch gets its last bookmark.
const PRE_TIMEOUT: Duration = Duration::from_secs(2);

fn watch_line(kind: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// A BOOKMARK's object: only kind, apiVersion and the resourceVersion the watch has reached.
fn bookmark(rt: &ResourceType, rv: u64, annotations: Option<Value>) -> Bytes {
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if let Some(a) = annotations {
        metadata["annotations"] = a;
    }
    watch_line(
        "BOOKMARK",
        &json!({"kind": rt.kind, "apiVersion": rt.api_version(), "metadata": metadata}),
    )
}

/// What a watch request asked for, besides the resource and its filter.
struct Options {
    send_initial: bool,
    from_rv: Option<u64>,
    timeout: Duration,
    bookmarks: Option<Duration>,
}

impl Options {
    fn parse(shared: &Shared, query: &HashMap<String, String>) -> Result<Options, ApiError> {
        let send_initial = query.get("sendInitialEvents").map(String::as_str) == Some("true");
        let rv_param = query
            .get("resourceVersion")
            .map(String::as_str)
            .unwrap_or_default();
        let from_rv = if send_initial || rv_param.is_empty() || rv_param == "0" {
            None
        } else {
            Some(
                rv_param
                    .parse::<u64>()
                    .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv_param}")))?,
            )
        };
        let timeout = match query.get("timeoutSeconds") {
            Some(t) => Duration::from_secs(
                t.parse::<u64>()
                    .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds: {t}")))?,
            ),
            None => DEFAULT_WATCH_TIMEOUT,
        };
        let bookmarks = (query.get("allowWatchBookmarks").map(String::as_str) == Some("true")).then(|| {
            *shared
                .bookmark_interval
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
        });
        Ok(Options {
            send_initial,
            from_rv,
            timeout,
            bookmarks,
        })
    }
}

/// Serve a watch of `rt`: a 200 streaming one JSON event per line, until `cut` (subscribed to
/// [`crate::TestServer::end_watches`] when the request arrived) changes.
pub fn watch(
    shared: &Arc<Shared>,
    rt: ResourceType,
    filter: Filter,
    query: &HashMap<String, String>,
    view: View,
    cut: tokio::sync::watch::Receiver<u64>,
) -> Result<Response, ApiError> {
    let opts = Options::parse(shared, query)?;
    let render = {
        let rt = rt.clone();
        let clock = shared.store.clock().clone();
        move |obj: Value| -> Value { view.object(&rt, obj, clock.now()) }
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(256);
    match shared.store.watch(&rt, &filter, opts.from_rv) {
        Err(e) => {
            // Like the API server: 200 and an ERROR event, so clients re-list.
            let _ = tx.try_send(watch_line("ERROR", &e.to_status()));
        }
        // A watch cut while it was being set up (its request arrived before an `end_watches`, its
        // snapshot was taken after) ends with nothing: the snapshot may hold changes made after
        // the cut, which the client must not see on this watch.
        Ok(_) if cut.has_changed().unwrap_or(true) => {}
        Ok(start) => {
            let shared = shared.clone();
            tokio::spawn(async move {
                let mut lines: Vec<Bytes> = Vec::new();
                for obj in start.initial {
                    lines.push(watch_line("ADDED", &render(obj)));
                }
                // Only a watch that allows bookmarks gets this one, as from the API server.
                if opts.send_initial && opts.bookmarks.is_some() {
                    let end = json!({"k8s.io/initial-events-end": "true"});
                    lines.push(bookmark(&rt, start.rv, Some(end)));
                }
                // Whether the last replayed change of the resource was filtered out.
                let mut passed_by = false;
                for ev in &start.replay {
                    match classify(&rt, ev, &filter) {
                        Some((kind, obj)) => {
                            passed_by = false;
                            lines.push(watch_line(kind, &render(obj)));
                        }
                        None => passed_by = true,
                    }
                }
                for line in lines {
                    if tx.send(line).await.is_err() {
                        return;
                    }
                }
                let live = Live {
                    shared,
                    rt,
                    filter,
                    tx,
                    rv: start.rv,
                    cut,
                };
                live.serve(start.live, &opts, render, passed_by).await;
            });
        }
    }
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<Bytes, Infallible>(b), rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache, private")
        .body(Body::from_stream(stream))
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// The live part of a watch.
struct Live {
    shared: Arc<Shared>,
    rt: ResourceType,
    filter: Filter,
    tx: Sender<Bytes>,
    /// The resourceVersion the watch has reached: every change up to it has been sent (or filtered out).
    rv: u64,
    /// Changes when [`crate::TestServer::end_watches`] is called.
    cut: tokio::sync::watch::Receiver<u64>,
}

impl Live {
    /// Sends live events until the watch ends; `passed_by`: whether the replay ended with changes
    /// of the resource the filter left out.
    async fn serve(
        mut self,
        mut live: tokio::sync::broadcast::Receiver<Arc<Event>>,
        opts: &Options,
        render: impl Fn(Value) -> Value,
        mut passed_by: bool,
    ) {
        let mut shutdown = self.shared.shutdown.clone();
        let key = self.rt.store_key();
        let deadline = tokio::time::sleep(opts.timeout);
        tokio::pin!(deadline);
        let every = opts.bookmarks.unwrap_or(DEFAULT_BOOKMARK_INTERVAL);
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        // Like the API server, a watch that allows bookmarks also gets one 2s before it times out
        // if changes of its resource passed it by since its last event (they did not match), so
        // its client resumes from as recent a version as it can. (Found by the referee.)
        let last_call = opts.timeout.checked_sub(PRE_TIMEOUT).filter(|d| !d.is_zero());
        let before_timeout = tokio::time::sleep(last_call.unwrap_or(opts.timeout));
        tokio::pin!(before_timeout);
        let mut last_call_due = opts.bookmarks.is_some() && last_call.is_some();
        loop {
            // Biased: once the watch is cut (or ends otherwise), no change made after that is sent,
            // even when one is already waiting.
            let ev = tokio::select! {
                biased;
                _ = self.cut.changed() => break,
                _ = shutdown.wait_for(|stop| *stop) => break,
                _ = &mut deadline => break,
                _ = self.tx.closed() => break,
                ev = live.recv() => Some(ev),
                _ = ticker.tick(), if opts.bookmarks.is_some() => None,
                _ = &mut before_timeout, if last_call_due => {
                    last_call_due = false;
                    if !passed_by {
                        continue;
                    }
                    None
                }
            };
            let Some(ev) = ev else {
                passed_by = false;
                if self.tx.send(bookmark(&self.rt, self.rv, None)).await.is_err() {
                    break;
                }
                continue;
            };
            match ev {
                Ok(ev) if ev.rv > self.rv => {
                    self.rv = ev.rv;
                    if ev.key != key {
                        continue;
                    }
                    let lag = *self
                        .shared
                        .watch_lag
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    if !lag.is_zero() {
                        tokio::time::sleep(lag).await;
                        if self.cut.has_changed().unwrap_or(true) {
                            break;
                        }
                    }
                    match classify(&self.rt, &ev, &self.filter) {
                        Some((kind, obj)) => {
                            passed_by = false;
                            if self.tx.send(watch_line(kind, &render(obj))).await.is_err() {
                                break;
                            }
                        }
                        None => passed_by = true,
                    }
                }
                Ok(_) => {}
                // Too slow or shutting down: end the stream; the client resumes from its last version.
                Err(RecvError::Lagged(_) | RecvError::Closed) => break,
            }
        }
    }
}

/// Which watch event (if any) a watcher of `rt` with `filter` sees for a stored change, and the object
/// as served at the version of `rt`.
fn classify(rt: &ResourceType, ev: &crate::store::Event, filter: &Filter) -> Option<(&'static str, Value)> {
    let object = present(rt, ev.object.clone());
    let now = filter.matches(&object);
    match ev.kind {
        EventKind::Added | EventKind::Deleted => now.then_some((ev.kind.as_str(), object)),
        EventKind::Modified => {
            let before = ev
                .old
                .as_ref()
                .map_or(now, |o| filter.matches(&present(rt, o.clone())));
            match (before, now) {
                (true, true) => Some(("MODIFIED", object)),
                (false, true) => Some(("ADDED", object)),
                (true, false) => Some(("DELETED", object)),
                (false, false) => None,
            }
        }
    }
}
