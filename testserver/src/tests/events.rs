//! Core v1 and events.k8s.io/v1 events: one storage, two views.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent};
use k8s_openapi::api::events::v1::Event as EventsEvent;
use kube::Resource;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use serde_json::{Value, json};

use super::{DEADLINE, client, cm, raw_request};
use crate::TestServer;

/// The field selector `kubectl describe` (v1.32) sends for an object's events.
fn kubectl_selector(name: &str, ns: &str, kind: &str, uid: &str) -> String {
    format!(
        "involvedObject.name={name},involvedObject.namespace={ns},involvedObject.kind={kind},involvedObject.uid={uid}"
    )
}

#[tokio::test]
async fn recorder_events_are_core_events_with_series() {
    let server = TestServer::start().await.unwrap();
    let client = client(&server).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "shop");
    let web = cms
        .create(&PostParams::default(), &cm("web", json!({})))
        .await
        .unwrap();
    let other = cms
        .create(&PostParams::default(), &cm("other", json!({})))
        .await
        .unwrap();
    let uid = web.metadata.uid.clone().unwrap();
    let core: Api<CoreEvent> = Api::namespaced(client.clone(), "shop");

    // A watch on core events sees what the Recorder writes through events.k8s.io.
    let selector = kubectl_selector("web", "shop", "ConfigMap", &uid);
    let mut watch = core
        .watch(&WatchParams::default().fields(&selector), "0")
        .await
        .unwrap()
        .boxed();

    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "x".into(),
            instance: None,
        },
    );
    let event = Event {
        type_: EventType::Warning,
        reason: "ProbeFailed".into(),
        note: Some("3 probes failed".into()),
        action: "Probe".into(),
        secondary: None,
    };
    recorder.publish(&event, &web.object_ref(&())).await.unwrap();
    recorder.publish(&event, &web.object_ref(&())).await.unwrap();
    recorder.publish(&event, &other.object_ref(&())).await.unwrap();
    let reqs = server.requests();
    assert!(reqs.iter().any(|r| {
        r.method == "PATCH"
            && r.path
                .starts_with("/apis/events.k8s.io/v1/namespaces/shop/events/web.")
    }));

    let got = tokio::time::timeout(DEADLINE, watch.try_next())
        .await
        .unwrap()
        .unwrap();
    match got {
        Some(WatchEvent::Added(e)) => assert_eq!(e.message.as_deref(), Some("3 probes failed")),
        other => panic!("expected ADDED, got {other:?}"),
    }

    let list = core
        .list(&ListParams::default().fields(&selector).limit(500))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1, "only the event about web");
    let e = &list.items[0];
    assert_eq!(e.involved_object.name.as_deref(), Some("web"));
    assert_eq!(e.involved_object.kind.as_deref(), Some("ConfigMap"));
    assert_eq!(e.involved_object.uid.as_deref(), Some(uid.as_str()));
    assert_eq!(e.message.as_deref(), Some("3 probes failed"));
    assert_eq!(e.reason.as_deref(), Some("ProbeFailed"));
    assert_eq!(e.type_.as_deref(), Some("Warning"));
    assert_eq!(e.action.as_deref(), Some("Probe"));
    assert_eq!(e.reporting_component.as_deref(), Some("x"));
    assert_eq!(e.reporting_instance.as_deref(), Some("x"));
    assert!(e.event_time.is_some());
    let series = e.series.as_ref().expect("the second publish makes a series");
    assert_eq!(series.count, Some(2));
    assert!(series.last_observed_time.is_some());
    // Like the real conversion: the deprecated count is not derived from the series.
    assert_eq!(e.count, None);

    // The same object through events.k8s.io, selected by its own field names.
    let events: Api<EventsEvent> = Api::namespaced(client.clone(), "shop");
    let list = events
        .list(&ListParams::default().fields("regarding.name=web"))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1);
    let ev = &list.items[0];
    assert_eq!(ev.metadata.name, e.metadata.name);
    assert_eq!(ev.metadata.resource_version, e.metadata.resource_version);
    assert_eq!(ev.note.as_deref(), Some("3 probes failed"));
    assert_eq!(ev.reporting_controller.as_deref(), Some("x"));
    assert_eq!(ev.series.as_ref().map(|s| s.count), Some(2));
    // Core field names are refused there, as by the API server.
    match events
        .list(&ListParams::default().fields("involvedObject.name=web"))
        .await
    {
        Err(kube::Error::Api(e)) => {
            assert_eq!(
                (e.code, e.message.as_str()),
                (400, "field label not supported: involvedObject.name")
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(core.list(&ListParams::default()).await.unwrap().items.len(), 2);
}

#[tokio::test]
async fn legacy_core_events_through_events_api_and_tables() {
    let server = TestServer::start().await.unwrap();
    let client = client(&server).await;
    let core: Api<CoreEvent> = Api::namespaced(client.clone(), "shop");
    let legacy: CoreEvent = serde_json::from_value(json!({
        "metadata": {"name": "web.1"},
        "involvedObject": {"kind": "Pod", "name": "web-0", "namespace": "shop", "fieldPath": "spec.containers{web}"},
        "reason": "BackOff", "message": "Back-off restarting failed container ", "type": "Warning",
        "source": {"component": "kubelet", "host": "node-1"},
        "firstTimestamp": "2025-01-01T00:00:00Z", "lastTimestamp": "2025-01-01T00:00:10Z", "count": 3
    }))
    .unwrap();
    core.create(&PostParams::default(), &legacy).await.unwrap();

    let events: Api<EventsEvent> = Api::namespaced(client.clone(), "shop");
    let ev = events.get("web.1").await.unwrap();
    assert_eq!(
        ev.regarding.as_ref().and_then(|r| r.name.as_deref()),
        Some("web-0")
    );
    assert_eq!(ev.note.as_deref(), Some("Back-off restarting failed container "));
    assert_eq!(ev.deprecated_count, Some(3));
    assert_eq!(
        ev.deprecated_source.as_ref().and_then(|s| s.component.as_deref()),
        Some("kubelet")
    );
    assert!(ev.deprecated_first_timestamp.is_some() && ev.deprecated_last_timestamp.is_some());
    let raw = server
        .get("events.k8s.io/v1", "Event", Some("shop"), "web.1")
        .unwrap();
    assert!(raw.get("involvedObject").is_none() && raw.get("message").is_none());
    assert_eq!(raw["apiVersion"], "events.k8s.io/v1");

    // kubectl get events: the API server's event columns.
    let table = |path: &str| {
        let server = server.clone();
        let path = path.to_string();
        async move {
            let resp = raw_request(
                &server,
                &format!("GET {path} HTTP/1.1\r\nHost: x\r\nAccept: application/json;as=Table;v=v1;g=meta.k8s.io,application/json\r\nConnection: close\r\n\r\n"),
            )
            .await;
            let body = resp.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
            serde_json::from_str::<Value>(&body).unwrap()
        }
    };
    for path in [
        "/api/v1/namespaces/shop/events",
        "/apis/events.k8s.io/v1/namespaces/shop/events",
    ] {
        let t = table(path).await;
        let names: Vec<&str> = t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["priority"] == 0)
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["Last Seen", "Type", "Reason", "Object", "Message"],
            "{path}"
        );
        let cells = &t["rows"][0]["cells"];
        assert_eq!(cells[1], "Warning");
        assert_eq!(cells[2], "BackOff");
        assert_eq!(cells[3], "pod/web-0");
        assert_eq!(cells[4], "spec.containers{web}");
        assert_eq!(cells[5], "kubelet, node-1");
        assert_eq!(cells[6], "Back-off restarting failed container");
        assert_eq!(cells[8], 3);
        assert_eq!(cells[9], "web.1");
        assert!(cells[0].as_str().unwrap().ends_with('d'), "{cells}");
    }

    // Deleting through one API deletes from the other.
    events.delete("web.1", &Default::default()).await.unwrap();
    assert!(core.list(&ListParams::default()).await.unwrap().items.is_empty());
}
