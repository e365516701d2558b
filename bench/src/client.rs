//! A small HTTP/1.1 client (hyper, keep-alive pool) for /metrics, /readyz and blackbox_exporter's
//! /probe. Loopback URLs only.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::{
    client::legacy::{Client as HyperClient, connect::HttpConnector},
    rt::TokioExecutor,
};

use crate::Result;

#[derive(Clone)]
pub struct Client {
    inner: HyperClient<HttpConnector, Empty<Bytes>>,
}

impl Client {
    pub fn new() -> Client {
        Client {
            inner: HyperClient::builder(TokioExecutor::new())
                .pool_max_idle_per_host(256)
                .build_http(),
        }
    }

    /// GETs `url` (which must be on 127.0.0.0/8); returns the status code and the body.
    pub async fn get(&self, url: &str, timeout: Duration) -> Result<(u16, String)> {
        let uri: hyper::Uri = url.parse()?;
        let loopback = uri
            .host()
            .and_then(|h| h.parse::<std::net::Ipv4Addr>().ok())
            .is_some_and(|ip| ip.is_loopback());
        if !loopback {
            return Err(format!("refusing a non-loopback URL: {url}").into());
        }
        let exchange = async {
            let response = self.inner.get(uri).await?;
            let status = response.status().as_u16();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((
                status,
                String::from_utf8_lossy(&body).into_owned(),
            ))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| format!("GET {url}: no answer within {timeout:?}"))?
    }
}
