//! HTTP-level tests with kube::Client.
