//! Start-up failures, with stand-in binaries (shell scripts) in place of the real components: the
//! error names the component and the log line that says why, and nothing started is left running.

#![allow(clippy::unwrap_used)] // a test: a failed step is the failure

use std::{os::unix::fs::PermissionsExt, path::Path};

use apphealth_cluster::{Component, Error, LocalCluster, Options};

/// A stand-in etcd that answers /health on its client port, as etcd does.
/// It writes its pid next to itself.
const HEALTHY_ETCD: &str = r#"#!/bin/sh
echo $$ > "$(dirname "$0")/etcd.pid"
port=$(printf '%s\n' "$@" | sed -n 's|^--listen-client-urls=http://127.0.0.1:||p')
exec python3 -c '
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"{\"health\":\"true\"}")
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
' "$port"
"#;

fn bin_dir(name: &str, scripts: &[(Component, &str)]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("apphealth-cluster-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("stages")).unwrap();
    std::fs::write(dir.join("stages/kwok-none.yaml"), "").unwrap();
    for c in Component::ALL {
        let script = scripts
            .iter()
            .find(|(s, _)| *s == c)
            .map_or("#!/bin/sh\nexec sleep 600\n", |(_, s)| s);
        let path = dir.join(c.name());
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}

fn options(bin: &Path) -> Options {
    Options::new(bin.join("cluster"), bin)
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !matches!(
            s.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().next()),
            Some("Z")
        )
    })
}

#[tokio::test]
async fn a_component_that_exits_is_named_with_the_line_that_says_why() {
    let bin = bin_dir(
        "etcd-exits",
        &[(
            Component::Etcd,
            "#!/bin/sh\necho 'starting'\necho 'error: listen tcp 127.0.0.1:2379: bind: address already in use' >&2\necho 'bye'\nexit 1\n",
        )],
    );
    let err = LocalCluster::start(options(&bin)).await.unwrap_err();
    match &err {
        Error::Exited {
            component,
            reason,
            log,
            ..
        } => {
            assert_eq!(component, "etcd");
            assert!(reason.contains("address already in use"), "{reason}");
            assert!(log.ends_with("logs/etcd.log"));
        }
        other => panic!("expected Exited, got {other}"),
    }
    assert!(err.to_string().contains("etcd exited while starting"), "{err}");
    std::fs::remove_dir_all(&bin).unwrap();
}

#[tokio::test]
async fn a_failure_after_the_first_components_stops_them() {
    let bin = bin_dir(
        "apiserver-exits",
        &[
            (Component::Etcd, HEALTHY_ETCD),
            (
                Component::KubeApiserver,
                "#!/bin/sh\necho 'E1205 10:00:00.000000 1 run.go:72] \"command failed\" err=\"error reading public key file\"' >&2\nexit 1\n",
            ),
        ],
    );
    let dir = bin.join("cluster");
    let err = LocalCluster::start(options(&bin)).await.unwrap_err();
    assert!(
        matches!(&err, Error::Exited { component, reason, .. }
            if component == "kube-apiserver" && reason.contains("error reading public key file")),
        "{err}"
    );
    // etcd had started and answered; it was stopped, and nothing is recorded as running.
    let pid: u32 = std::fs::read_to_string(bin.join("etcd.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(!alive(pid), "etcd ({pid}) was left running");
    assert!(!dir.join("cluster.json").exists());
    assert!(LocalCluster::attach(&dir).unwrap().is_none());
    std::fs::remove_dir_all(&bin).unwrap();
}

#[tokio::test]
async fn a_missing_binary_is_named_before_anything_starts() {
    let bin = bin_dir("missing", &[]);
    std::fs::remove_file(bin.join("kwok")).unwrap();
    let err = LocalCluster::start(options(&bin)).await.unwrap_err();
    assert!(
        matches!(&err, Error::MissingBinary { name, .. } if name == "kwok"),
        "{err}"
    );
    assert!(!bin.join("cluster/logs").exists(), "nothing was started");
    std::fs::remove_dir_all(&bin).unwrap();
}
