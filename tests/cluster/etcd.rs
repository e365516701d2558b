//! etcd's JSON gateway on loopback (`/v3/...`), for what only etcd can do: compact its history, or
//! store an object the API server would refuse (as a restore from backup, or an older CRD, would
//! have stored it).

use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::{Value, json};

/// POSTs `body` to `path` of etcd at `url` (`http://127.0.0.1:port`); returns the JSON answer.
pub async fn post(url: &str, path: &str, body: Value) -> Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://");
    assert!(addr.starts_with("127."), "etcd is on loopback: {url}");
    let body = body.to_string();
    let request = format!(
        "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, json) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "etcd answered {head}: {json:.300}"
    );
    serde_json::from_str(json).unwrap_or_else(|e| panic!("etcd answered {json:.300}: {e}"))
}

/// Compacts the history up to the current revision; returns the revision.
pub async fn compact(url: &str) -> u64 {
    let range = post(url, "/v3/kv/range", json!({"key": STANDARD.encode([0u8])})).await;
    let revision: u64 = range["header"]["revision"].as_str().unwrap().parse().unwrap();
    post(
        url,
        "/v3/kv/compaction",
        json!({"revision": revision.to_string(), "physical": true}),
    )
    .await;
    revision
}

/// Stores `object` (a custom resource, which the API server keeps as JSON) under `key`.
pub async fn put(url: &str, key: &str, object: &Value) {
    post(
        url,
        "/v3/kv/put",
        json!({"key": STANDARD.encode(key), "value": STANDARD.encode(object.to_string())}),
    )
    .await;
}
