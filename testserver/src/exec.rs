//! `pods/exec` over WebSocket, the channel protocol kube-rs (`Api::<Pod>::exec`) and kubectl speak:
//! subprotocol `v5.channel.k8s.io` (preferred) or `v4.channel.k8s.io`; every binary message starts with
//! its channel: 0 stdin, 1 stdout, 2 stderr, 3 error (the final `Status`), 4 terminal resize, 255 (v5)
//! close of a stream. The command's output comes from the handler set with
//! [`crate::TestServer::set_exec_handler`]; nothing runs.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::FromRequestParts;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::http::request::Parts;
use axum::http::{Method, header};
use axum::response::Response;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::http::Shared;
use crate::pods::{parse_bool, pick_container};

/// The subprotocols served, preferred first.
pub const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
/// Output is sent in messages of at most this many bytes.
const CHUNK: usize = 32 * 1024;

/// One `exec` into a container, as the handler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExecRequest {
    /// Namespace of the pod.
    pub namespace: String,
    /// Name of the pod.
    pub pod: String,
    /// The container (the `container` parameter, else the pod's only container).
    pub container: String,
    /// The command and its arguments (the `command` parameters, in order).
    pub command: Vec<String>,
}

/// What an exec "prints" and how it ends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecResult {
    /// Sent on stdout (if the client asked for stdout).
    pub stdout: Vec<u8>,
    /// Sent on stderr (if the client asked for stderr; on stdout after stdout's bytes with `tty`).
    pub stderr: Vec<u8>,
    /// 0 is success; anything else is reported as `NonZeroExitCode` with this code.
    pub exit_code: i32,
    /// Wait this long before sending anything (to test a caller's timeout).
    pub delay: Option<Duration>,
}

/// The exec handler type.
pub type ExecHandler = Arc<dyn Fn(&ExecRequest) -> ExecResult + Send + Sync + 'static>;

/// The `Status` sent on the error channel at the end, as the kubelet writes it.
pub fn exit_status(command: &[String], exit_code: i32) -> Value {
    if exit_code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!(
            "command terminated with non-zero exit code: error executing command [{}], exit code {exit_code}",
            command.join(" ")
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": exit_code.to_string()}]},
    })
}

struct Streams {
    stdout: bool,
    stderr: bool,
    tty: bool,
}

/// `GET` (or `POST`) `.../pods/{name}/exec`: 404 for a missing pod and 400 for a bad container or
/// parameters before upgrading, else switch to WebSocket and run the session.
pub async fn serve(
    shared: &Arc<Shared>,
    mut parts: Parts,
    ns: &str,
    name: &str,
) -> Result<Response, ApiError> {
    let pairs: Vec<(String, String)> =
        axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map(|q| q.0)
            .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))?;
    let param = |n: &str| pairs.iter().rev().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    let flag = |n: &str| match param(n) {
        None | Some("") => Ok(false),
        Some(v) => {
            parse_bool(v).ok_or_else(|| ApiError::bad_request(format!("{n}: invalid boolean value {v:?}")))
        }
    };
    let command: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.clone())
        .collect();
    let streams = Streams {
        stdout: flag("stdout")?,
        stderr: flag("stderr")?,
        tty: flag("tty")?,
    };
    let stdin = flag("stdin")?;
    let pods = shared.store.resolve_kind("v1", "Pod")?;
    let pod = shared.store.get(&pods, Some(ns), name)?;
    let container = pick_container(&pod, name, param("container"))?;
    if !stdin && !streams.stdout && !streams.stderr {
        return Err(ApiError::bad_request(
            "you must specify at least 1 of stdin, stdout, stderr",
        ));
    }
    let upgrade = parts
        .headers
        .get(header::UPGRADE)
        .is_some_and(|u| u.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if !upgrade {
        return Err(ApiError::bad_request("Upgrade request required"));
    }
    // kubectl and kube-rs use GET; accept POST with an upgrade too.
    parts.method = Method::GET;
    let ws = WebSocketUpgrade::from_request_parts(&mut parts, &())
        .await
        .map_err(|e| ApiError::bad_request(e.body_text()))?
        .protocols(PROTOCOLS);
    if ws.selected_protocol().is_none() {
        return Err(ApiError::bad_request(format!(
            "none of the requested subprotocols is supported (supported: {})",
            PROTOCOLS.join(", ")
        )));
    }
    let request = ExecRequest {
        namespace: ns.to_string(),
        pod: name.to_string(),
        container,
        command,
    };
    let handler = shared.pods.exec_handler();
    let shutdown = shared.shutdown.clone();
    Ok(ws.on_upgrade(move |socket| session(socket, request, handler, streams, shutdown)))
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    Message::Binary(Bytes::from(v))
}

async fn session(
    mut socket: WebSocket,
    request: ExecRequest,
    handler: Option<ExecHandler>,
    streams: Streams,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let result = match handler {
        Some(h) => h(&request),
        None => ExecResult {
            stderr: b"no exec handler".to_vec(),
            exit_code: 126,
            ..Default::default()
        },
    };
    // Open the channels like the API server: one message with just the channel number.
    let mut opening = Vec::new();
    if streams.stdout {
        opening.push(STDOUT);
    }
    if streams.stderr && !streams.tty {
        opening.push(STDERR);
    }
    opening.push(ERROR);
    for ch in opening {
        if socket.send(frame(ch, &[])).await.is_err() {
            return;
        }
    }
    // Wait out the delay, reading (and discarding) stdin and resize messages meanwhile; stop when the
    // client goes away or the server shuts down.
    let delay = tokio::time::sleep(result.delay.unwrap_or_default());
    tokio::pin!(delay);
    loop {
        tokio::select! {
            () = &mut delay => break,
            _ = shutdown.wait_for(|stop| *stop) => return,
            msg = socket.recv() => match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            },
        }
    }
    let mut out: Vec<(u8, &[u8])> = Vec::new();
    if streams.stdout {
        out.push((STDOUT, &result.stdout));
        if streams.tty {
            out.push((STDOUT, &result.stderr));
        }
    }
    if streams.stderr && !streams.tty {
        out.push((STDERR, &result.stderr));
    }
    for (ch, data) in out {
        for chunk in data.chunks(CHUNK) {
            if socket.send(frame(ch, chunk)).await.is_err() {
                return;
            }
        }
    }
    let status = serde_json::to_vec(&exit_status(&request.command, result.exit_code)).unwrap_or_default();
    if socket.send(frame(ERROR, &status)).await.is_err() {
        return;
    }
    // A normal closure (1000): kubectl (gorilla/websocket) reads it as the end of every stream; a close
    // without a code would be an error to it.
    let close = CloseFrame {
        code: close_code::NORMAL,
        reason: "".into(),
    };
    let _ = socket.send(Message::Close(Some(close))).await;
    // Let the client answer the close (bounded: a client that never does is dropped).
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(msg)) = socket.recv().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_like_the_kubelet() {
        assert_eq!(exit_status(&[], 0), json!({"metadata": {}, "status": "Success"}));
        let s = exit_status(&["sh".into(), "-c".into(), "exit 3".into()], 3);
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(
            s["message"],
            "command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3"
        );
        assert_eq!(
            s["details"]["causes"],
            json!([{"reason": "ExitCode", "message": "3"}])
        );
    }
}
