//! Reaching a cluster: its URLs and credentials, clients, kubeconfigs, and the health checks that
//! say a component is ready.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use kube::{Client, Config, config::KubeConfigOptions};

use crate::{Error, Layout, pki};

/// How to reach a cluster.
#[derive(Clone, Debug)]
pub struct Access {
    /// The API server's URL.
    pub api: String,
    /// etcd's client URL (plain HTTP on loopback).
    pub etcd: String,
    /// The CA that signed the API server's certificate.
    pub ca: PathBuf,
    /// The administrator's kubeconfig.
    pub kubeconfig: PathBuf,
}

impl Access {
    /// A client with the administrator's identity.
    pub async fn client(&self) -> Result<Client, Error> {
        client_from(&self.kubeconfig).await
    }

    /// A kubeconfig that authenticates with `token` (a ServiceAccount's, from the TokenRequest
    /// API), for running a program with exactly that account's rights.
    pub fn token_kubeconfig(&self, token: &str, namespace: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\n\
             clusters:\n- name: local\n  cluster:\n    server: {api}\n    certificate-authority: {ca}\n\
             users:\n- name: token\n  user:\n    token: {token}\n\
             contexts:\n- name: local\n  context:\n    cluster: local\n    user: token\n    namespace: {namespace}\n\
             current-context: local\n",
            api = self.api,
            ca = self.ca.display(),
        )
    }
}

/// The kubeconfig of a client-certificate identity.
pub(crate) fn certificate_kubeconfig(layout: &Layout, api: &str, id: pki::Identity) -> String {
    format!(
        "apiVersion: v1\nkind: Config\n\
         clusters:\n- name: apphealth-local\n  cluster:\n    server: {api}\n    certificate-authority: {ca}\n\
         users:\n- name: {user}\n  user:\n    client-certificate: {cert}\n    client-key: {key}\n\
         contexts:\n- name: apphealth-local\n  context:\n    cluster: apphealth-local\n    user: {user}\n    namespace: default\n\
         current-context: apphealth-local\n",
        ca = layout.pki.ca().display(),
        user = id.user,
        cert = layout.pki.cert(id.file).display(),
        key = layout.pki.key(id.file).display(),
    )
}

/// A client from a kubeconfig file.
pub async fn client_from(kubeconfig: &Path) -> Result<Client, Error> {
    install_crypto_provider();
    let what = || format!("kubeconfig {}", kubeconfig.display());
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .map_err(|e| Error::Kube(what(), kube::Error::InferKubeconfig(e)))?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| Error::Kube(what(), kube::Error::InferKubeconfig(e)))?;
    Client::try_from(config).map_err(|e| Error::Kube(what(), e))
}

pub(crate) fn install_crypto_provider() {
    // An Err means one is installed already, which is all that matters.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub(crate) async fn readyz(client: &Client) -> bool {
    let Ok(request) = http::Request::get("/readyz").body(Vec::new()) else {
        return false;
    };
    client
        .request_text(request)
        .await
        .is_ok_and(|body| body.trim() == "ok")
}

/// etcd's /health over plain HTTP on loopback.
pub(crate) async fn etcd_healthy(port: u16) -> Option<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    stream
        .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .ok()?;
    let mut body = String::new();
    tokio::time::timeout(Duration::from_secs(2), stream.read_to_string(&mut body))
        .await
        .ok()?
        .ok()?;
    body.contains("\"health\":\"true\"").then_some(())
}
