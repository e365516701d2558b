//! The cases about watches and lists: order, selectors, bookmarks, streaming lists, resource
//! versions and `410 Gone`.

use std::time::Duration;

use serde_json::{Value, json};

use super::side::*;

/// A watch from a list's resourceVersion replays what happened since, in order; from "now", without
/// a resourceVersion and from `0`; and what lists answer for resourceVersion and
/// resourceVersionMatch.
pub(super) async fn watch_order(s: &mut Side) {
    let r0 = s.list_rv(CONFIGMAPS).await;
    s.post(CONFIGMAPS, &configmap("a", json!({"w": "1"}))).await;
    s.post(CONFIGMAPS, &configmap("b", json!({"w": "1"}))).await;
    s.patch(
        &format!("{CONFIGMAPS}/a"),
        MERGE,
        &json!({"data": {"k": "changed"}}),
    )
    .await;
    s.delete(&format!("{CONFIGMAPS}/b")).await;
    // Selected: the root CA publisher's kube-root-ca.crt of the new namespace may land after r0.
    let seen = s
        .watch_events(
            &format!("{CONFIGMAPS}?watch=1&resourceVersion={r0}&timeoutSeconds=2&labelSelector=w%3D1"),
            ALL,
        )
        .await;
    s.note("from the list's resourceVersion", seen);
    let now = s.list_rv(CONFIGMAPS).await;
    for (label, from) in [
        ("from now", format!("&resourceVersion={now}")),
        ("without a resourceVersion", String::new()),
        ("from resourceVersion 0", "&resourceVersion=0".to_owned()),
    ] {
        let seen = s
            .watch_events(
                &format!("{CONFIGMAPS}?watch=1{from}&timeoutSeconds=1&labelSelector=w%3D1"),
                ALL,
            )
            .await;
        s.note(label, seen);
    }
    for query in [
        "resourceVersion=0".to_owned(),
        format!("resourceVersion={r0}&resourceVersionMatch=NotOlderThan"),
        format!("resourceVersion={r0}&resourceVersionMatch=Exact"),
        "resourceVersionMatch=Exact".to_owned(),
        "resourceVersion=abc".to_owned(),
    ] {
        let r = s.get(&format!("{CONFIGMAPS}?labelSelector=w%3D1&{query}")).await;
        s.note(&format!("list {}", query.replace(&r0, "r0")), names(&r));
    }
}

/// Selector transitions in a watch: an object that comes to match is ADDED, one that stops is
/// DELETED.
pub(super) async fn watch_selectors(s: &mut Side) {
    let r0 = s.list_rv(CONFIGMAPS).await;
    s.post(CONFIGMAPS, &configmap("a", json!({"sel": "yes"}))).await;
    s.post(CONFIGMAPS, &configmap("b", json!({"sel": "no"}))).await;
    s.patch(
        &format!("{CONFIGMAPS}/a"),
        MERGE,
        &json!({"metadata": {"labels": {"sel": "no"}}}),
    )
    .await;
    s.patch(
        &format!("{CONFIGMAPS}/b"),
        MERGE,
        &json!({"metadata": {"labels": {"sel": "yes"}}}),
    )
    .await;
    s.patch(
        &format!("{CONFIGMAPS}/a"),
        MERGE,
        &json!({"data": {"k": "changed"}}),
    )
    .await;
    s.delete(&format!("{CONFIGMAPS}/b")).await;
    for query in ["labelSelector=sel%3Dyes", "fieldSelector=metadata.name%3Da"] {
        let seen = s
            .watch_events(
                &format!("{CONFIGMAPS}?watch=1&resourceVersion={r0}&timeoutSeconds=2&{query}"),
                ALL,
            )
            .await;
        s.note(query, seen);
    }
}

/// Bookmarks when asked: a watch that saw nothing of a write elsewhere learns its resourceVersion
/// before it times out.
pub(super) async fn watch_bookmarks(s: &mut Side) {
    for bookmarks in [true, false] {
        let r0 = s.list_rv(CONFIGMAPS).await;
        let path = format!(
            "{CONFIGMAPS}?watch=1&resourceVersion={r0}&timeoutSeconds=5&labelSelector=w%3D1&allowWatchBookmarks={bookmarks}"
        );
        let side = &*s;
        let (seen, _) = tokio::join!(side.watch_events(&path, ALL), async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            side.post(
                CONFIGMAPS,
                &configmap(&format!("unwatched-{bookmarks}"), json!({})),
            )
            .await
        });
        s.note(&format!("allowWatchBookmarks={bookmarks}"), seen);
    }
}

/// A streaming list (`sendInitialEvents`), as kube-runtime's watcher does with `streaming_lists`.
pub(super) async fn watch_list(s: &mut Side) {
    s.post(CONFIGMAPS, &configmap("a", json!({"w": "1"}))).await;
    s.post(CONFIGMAPS, &configmap("b", json!({"w": "1"}))).await;
    let base = format!("{CONFIGMAPS}?watch=1&sendInitialEvents=true&labelSelector=w%3D1&timeoutSeconds=30");
    // Three events at most: up to the initial-events-end bookmark; the watch would run on.
    for (label, path) in [
        (
            "streaming list",
            format!("{base}&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan"),
        ),
        (
            "without resourceVersionMatch",
            format!("{base}&allowWatchBookmarks=true"),
        ),
        (
            "without allowWatchBookmarks",
            format!("{base}&resourceVersionMatch=NotOlderThan"),
        ),
        (
            "resourceVersionMatch without sendInitialEvents",
            format!(
                "{CONFIGMAPS}?watch=1&resourceVersion=0&resourceVersionMatch=NotOlderThan&timeoutSeconds=1"
            ),
        ),
    ] {
        let seen = s.watch_events(&path, 3).await;
        s.note(label, seen);
    }
}

fn widget(name: &str) -> Value {
    json!({"apiVersion": "referee.apphealth.io/v1", "kind": "Widget", "metadata": {"name": name}, "spec": {"size": 1}})
}

/// `410 Gone`: a watch from a resourceVersion the server no longer has is answered with an ERROR
/// event (HTTP 200) carrying an `Expired` Status; an exact list at it with 410 Expired.
pub(super) async fn watch_gone(s: &mut Side) {
    s.post(WIDGETS, &widget("churn")).await;
    let r0 = s.list_rv(WIDGETS).await;
    for n in 0..3 {
        s.patch(
            &format!("{WIDGETS}/churn"),
            MERGE,
            &json!({"metadata": {"labels": {"n": n.to_string()}}}),
        )
        .await;
    }
    s.expire(&r0).await;
    let mut seen = s
        .watch_events(
            &format!("{WIDGETS}?watch=1&resourceVersion={r0}&timeoutSeconds=2"),
            ALL,
        )
        .await;
    // The message names the oldest resourceVersion still available, which differs.
    if let Some(m) = seen.pointer_mut("/events/0/ERROR/message") {
        *m = json!(
            m.as_str()
                .unwrap_or_default()
                .split(" (")
                .next()
                .unwrap_or_default()
                .replace(&r0, "r0")
        );
    }
    s.note("watch from an expired resourceVersion", seen);
    let r = s
        .get(&format!(
            "{WIDGETS}?resourceVersion={r0}&resourceVersionMatch=Exact"
        ))
        .await;
    s.note("exact list at it", names(&r));
    let r = s
        .get(&format!(
            "{WIDGETS}?resourceVersion={r0}&resourceVersionMatch=NotOlderThan"
        ))
        .await;
    s.note("list not older than it", names(&r));
}
