//! `apphealth-testserver`: the in-process Kubernetes API test server, standalone.
//!
//! ```text
//! apphealth-testserver [--port N] [--kubeconfig PATH]
//! ```
//! Serves on 127.0.0.1:N (default 0: a free port), prints a kubeconfig for it to stdout (and writes it to
//! PATH if given), logs every request (`RUST_LOG` filters, default `info`) and runs until Ctrl-C.

#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used)]

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;

use apphealth_testserver::TestServer;

struct Args {
    port: u16,
    kubeconfig: Option<String>,
}

const USAGE: &str = "usage: apphealth-testserver [--port N] [--kubeconfig PATH]";

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut out = Args {
        port: 0,
        kubeconfig: None,
    };
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or(format!("{name} needs a value"))
        };
        match flag.as_str() {
            "--port" => {
                let v = value("--port")?;
                out.port = v.parse().map_err(|_| format!("invalid port {v:?}"))?;
            }
            "--kubeconfig" => out.kubeconfig = Some(value("--kubeconfig")?),
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Some(out))
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let server = match TestServer::start_on(SocketAddr::from(([127, 0, 0, 1], args.port))).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot listen on 127.0.0.1:{}: {e}", args.port);
            return ExitCode::FAILURE;
        }
    };
    let kubeconfig = server.kubeconfig();
    if let Some(path) = &args.kubeconfig {
        if let Err(e) = std::fs::write(path, &kubeconfig) {
            eprintln!("cannot write kubeconfig to {path}: {e}");
            return ExitCode::FAILURE;
        }
    }
    println!("{kubeconfig}");
    tracing::info!(url = %server.url(), "serving; Ctrl-C to stop");
    if let Err(e) = tokio::signal::ctrl_c().await {
        eprintln!("cannot wait for Ctrl-C: {e}");
    }
    server.shutdown();
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Args>, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn arguments() {
        let a = parse(&["--port", "8080", "--kubeconfig=/tmp/k"])
            .unwrap()
            .unwrap();
        assert_eq!(a.port, 8080);
        assert_eq!(a.kubeconfig.as_deref(), Some("/tmp/k"));
        assert_eq!(parse(&[]).unwrap().unwrap().port, 0);
        assert!(parse(&["--help"]).unwrap().is_none());
        assert!(parse(&["--port"]).is_err());
        assert!(parse(&["--port", "x"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
    }
}
