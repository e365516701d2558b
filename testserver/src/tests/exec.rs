//! `pods/exec` over WebSocket, through kube-rs's `Api::<Pod>::exec`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams, AttachedProcess};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{DEADLINE, client, raw_request};
use crate::{ExecRequest, ExecResult, TestServer};

fn pods(server: &TestServer) {
    for (name, containers) in [
        (
            "web",
            json!([{"name": "app", "image": "app:1"}, {"name": "proxy", "image": "envoy:1"}]),
        ),
        ("solo", json!([{"name": "only", "image": "x"}])),
    ] {
        server
            .create(json!({"apiVersion": "v1", "kind": "Pod",
                           "metadata": {"name": name, "namespace": "shop"}, "spec": {"containers": containers}}))
            .unwrap();
    }
}

/// stdout, stderr and the final status of an exec.
async fn finish(
    mut p: AttachedProcess,
) -> (
    String,
    String,
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Status,
) {
    let mut stdout = p.stdout();
    let mut stderr = p.stderr();
    let status = p.take_status().unwrap();
    let read = |r: Option<tokio::io::ReadHalf<tokio::io::SimplexStream>>| async move {
        let mut s = String::new();
        if let Some(mut r) = r {
            r.read_to_string(&mut s).await.unwrap();
        }
        s
    };
    let (out, err, status) = tokio::time::timeout(DEADLINE, async {
        tokio::join!(read(stdout.take()), read(stderr.take()), status)
    })
    .await
    .expect("exec did not finish");
    (out, err, status.expect("no status"))
}

#[tokio::test]
async fn exec_reports_output_and_exit_status() {
    let server = TestServer::start().await.unwrap();
    pods(&server);
    let seen: Arc<Mutex<Vec<ExecRequest>>> = Arc::default();
    let log = seen.clone();
    server.set_exec_handler(move |req| {
        log.lock().unwrap().push(req.clone());
        match req.command.first().map(String::as_str) {
            Some("echo") => ExecResult {
                stdout: format!("{}\n", req.command[1..].join(" ")).into_bytes(),
                ..Default::default()
            },
            Some("fail") => ExecResult {
                stdout: b"partial".to_vec(),
                stderr: b"boom\n".to_vec(),
                exit_code: 3,
                delay: None,
            },
            _ => ExecResult {
                delay: Some(Duration::from_secs(3600)),
                ..Default::default()
            },
        }
    });
    let api: Api<Pod> = Api::namespaced(client(&server).await, "shop");
    let ap = AttachParams::default().container("app");

    let p = api.exec("web", ["echo", "hello", "world"], &ap).await.unwrap();
    let (out, err, status) = finish(p).await;
    assert_eq!((out.as_str(), err.as_str()), ("hello world\n", ""));
    assert_eq!(status.status.as_deref(), Some("Success"));
    assert_eq!(
        seen.lock().unwrap()[0],
        ExecRequest {
            namespace: "shop".into(),
            pod: "web".into(),
            container: "app".into(),
            command: vec!["echo".into(), "hello".into(), "world".into()],
        }
    );

    // A non-zero exit code, as kube-rs reports it.
    let p = api
        .exec("solo", ["fail"], &AttachParams::default())
        .await
        .unwrap();
    let (out, err, status) = finish(p).await;
    assert_eq!((out.as_str(), err.as_str()), ("partial", "boom\n"));
    assert_eq!(status.status.as_deref(), Some("Failure"));
    assert_eq!(status.reason.as_deref(), Some("NonZeroExitCode"));
    let cause = &status.details.unwrap().causes.unwrap()[0];
    assert_eq!(
        (cause.reason.as_deref(), cause.message.as_deref()),
        (Some("ExitCode"), Some("3"))
    );
    assert_eq!(
        seen.lock().unwrap()[1].container,
        "only",
        "the only container is the default"
    );

    // With a tty, stderr comes on stdout.
    let tty = AttachParams::default().stderr(false).tty(true);
    let (out, _, _) = finish(api.exec("solo", ["fail"], &tty).await.unwrap()).await;
    assert_eq!(out, "partialboom\n");

    // A slow command: the caller's timeout fires first.
    let mut p = api
        .exec("solo", ["sleep"], &AttachParams::default())
        .await
        .unwrap();
    let status = p.take_status().unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(200), status)
            .await
            .is_err()
    );
    drop(p);

    // Refused before upgrading.
    let code = |e: kube::Error| match e {
        kube::Error::Api(s) => (s.code, s.message),
        other => panic!("expected an API error, got {other:?}"),
    };
    assert_eq!(
        code(api.exec("gone", ["x"], &ap).await.err().unwrap()),
        (404, "pods \"gone\" not found".into())
    );
    assert_eq!(
        code(
            api.exec("web", ["x"], &AttachParams::default().container("db"))
                .await
                .err()
                .unwrap()
        ),
        (400, "container db is not valid for pod web".into())
    );
    assert_eq!(
        code(
            api.exec("web", ["x"], &AttachParams::default())
                .await
                .err()
                .unwrap()
        )
        .0,
        400
    );

    // Without a handler: exit code 126.
    server.clear_exec_handler();
    let (_, err, status) = finish(api.exec("solo", ["ls"], &AttachParams::default()).await.unwrap()).await;
    assert_eq!(err, "no exec handler");
    assert_eq!(
        status.details.unwrap().causes.unwrap()[0].message.as_deref(),
        Some("126")
    );

    let requests = server.requests();
    let exec = requests.iter().find(|r| r.path.ends_with("/exec")).unwrap();
    assert_eq!((exec.method.as_str(), exec.status), ("GET", 101));
    assert!(
        exec.query.contains("command=echo&command=hello&command=world"),
        "{}",
        exec.query
    );
}

/// Send a handshake and return the response head (lower case) and the connection.
async fn handshake(server: &TestServer, method: &str, protocols: &str) -> (String, tokio::net::TcpStream) {
    let mut s = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let protocol = if protocols.is_empty() {
        String::new()
    } else {
        format!("Sec-WebSocket-Protocol: {protocols}\r\n")
    };
    let req = format!(
        "{method} /api/v1/namespaces/shop/pods/solo/exec?command=ls&stdout=true HTTP/1.1\r\nHost: x\r\n\
         Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{protocol}Content-Length: 0\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    tokio::time::timeout(DEADLINE, async {
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if s.read(&mut byte).await.unwrap() == 0 {
                break;
            }
            head.push(byte[0]);
        }
    })
    .await
    .unwrap();
    (String::from_utf8_lossy(&head).to_ascii_lowercase(), s)
}

/// Read the server's (unmasked) WebSocket frames up to and including the close frame: (opcode, payload).
async fn frames(s: &mut tokio::net::TcpStream) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    tokio::time::timeout(DEADLINE, async {
        loop {
            let mut head = [0u8; 2];
            s.read_exact(&mut head).await.unwrap();
            let len = match head[1] & 0x7f {
                126 => u64::from(s.read_u16().await.unwrap()),
                127 => s.read_u64().await.unwrap(),
                n => u64::from(n),
            };
            let mut payload = vec![0u8; usize::try_from(len).unwrap()];
            s.read_exact(&mut payload).await.unwrap();
            let opcode = head[0] & 0x0f;
            out.push((opcode, payload));
            if opcode == 8 {
                return;
            }
        }
    })
    .await
    .expect("no close frame");
    out
}

#[tokio::test]
async fn exec_negotiates_v5_or_v4() {
    let server = TestServer::start().await.unwrap();
    pods(&server);
    let (head, mut conn) = handshake(&server, "GET", "v4.channel.k8s.io").await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(
        head.contains("sec-websocket-protocol: v4.channel.k8s.io"),
        "{head}"
    );
    // Channels opened (stdout, error), the status on the error channel, then a normal closure (1000),
    // which kubectl needs to see the streams end.
    let got = frames(&mut conn).await;
    assert_eq!(got[0], (2, vec![1]));
    assert_eq!(got[1], (2, vec![3]));
    let (opcode, status) = &got[2];
    assert_eq!((*opcode, status[0]), (2, 3));
    let status: serde_json::Value = serde_json::from_slice(&status[1..]).unwrap();
    assert_eq!(status["details"]["causes"][0]["message"], "126");
    assert_eq!(got[3], (8, vec![0x03, 0xe8]));
    assert_eq!(got.len(), 4);
    // kubectl's preference order; POST with an upgrade works too.
    let (head, _) = handshake(
        &server,
        "POST",
        "v5.channel.k8s.io, v4.channel.k8s.io, base64.channel.k8s.io",
    )
    .await;
    assert!(
        head.contains("sec-websocket-protocol: v5.channel.k8s.io"),
        "{head}"
    );
    let (head, _) = handshake(&server, "GET", "channel.k8s.io").await;
    assert!(head.starts_with("http/1.1 400"), "{head}");
    // No upgrade at all.
    let resp = raw_request(
        &server,
        "GET /api/v1/namespaces/shop/pods/solo/exec?command=ls&stdout=true HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        resp.starts_with("HTTP/1.1 400") && resp.contains("Upgrade request required"),
        "{resp}"
    );
}
