//! An in-process Kubernetes API test server.
//!
//! [`TestServer`] serves real HTTP/1.1 on a loopback port and keeps real state, so that an unchanged
//! `kube::Client`, `kube_runtime` watchers and controllers, and the real `kubectl` can run against it.
//! It is test support, not a product.
//!
//! # Implemented
//! - **Resources**: core v1 `pods`, `services`, `events`, `configmaps`, `secrets`, `endpoints`,
//!   `namespaces` (cluster-scoped; `default`, `kube-system`, `kube-public`, `kube-node-lease` exist from the
//!   start and objects may be created in any namespace, existing or not); apps/v1 `deployments`,
//!   `statefulsets`, `replicasets`; `events.k8s.io/v1` events; `coordination.k8s.io/v1` leases;
//!   `policy/v1` `poddisruptionbudgets` (`pdb`); `autoscaling/v2` `horizontalpodautoscalers` (`hpa`,
//!   category `all`; `autoscaling/v1` HPAs are not served); `apiextensions.k8s.io/v1` CRDs. Creating a CRD registers its served versions (names, short names,
//!   categories, scope, `status`/`scale` subresources, printer columns) and sets its status to
//!   Established; deleting it unregisters them and deletes its objects (with DELETED events). All versions
//!   of a CRD share one storage; objects are served at the requested version without conversion.
//! - **Events**: core v1 `events` and `events.k8s.io/v1` `events` are one storage, as in a cluster: every
//!   read, write, watch and field selector works on the requested version, converted like Kubernetes
//!   does (`regarding`↔`involvedObject`, `note`↔`message`, `reportingController`↔`reportingComponent`,
//!   `deprecatedSource`/`deprecatedFirstTimestamp`/`deprecatedLastTimestamp`/`deprecatedCount`↔
//!   `source`/`firstTimestamp`/`lastTimestamp`/`count`; `series`, `eventTime` unchanged). So events
//!   published with kube-runtime's `Recorder` show in `kubectl describe` (`(x3 over 10s)` from `series`)
//!   and `kubectl get events`. As in Kubernetes, no field is derived from another: a series has no core
//!   `count`.
//! - **Discovery**: `/version` (v1.33.0), `/api`, `/api/v1`, `/apis`, `/apis/{group}`,
//!   `/apis/{group}/{version}` in the legacy (non-aggregated) forms, which kubectl falls back to; pods
//!   list their subresources `status`, `eviction` (`policy/v1` Eviction), `exec`, `log` and `resize`.
//!   `/openapi/v3` lists one document per served group-version (`/openapi/v3/api/v1`,
//!   `/openapi/v3/apis/{group}/{version}?hash=…`), each with its kinds' schemas in
//!   `components.schemas` (tagged `x-kubernetes-group-version-kind`; a CRD's `openAPIV3Schema`, an
//!   open schema for built-in kinds) and their item paths, whose PATCH and PUT take `fieldValidation`:
//!   so `kubectl apply` leaves validation to the server (its default `--validate=strict` sends
//!   `fieldValidation=Strict`) and `kubectl explain` reads a CRD's fields and descriptions.
//!   `/openapi/v2` is one Swagger 2.0 document of every kind, as JSON or as the protobuf kubectl asks
//!   for (`kubectl explain --output=plaintext-openapiv2`); a CRD's schema is converted for it as the
//!   API server converts it (junctors dropped; values that may be null or keep unknown fields
//!   untyped).
//! - **Verbs**: get, list (label selectors: `=`, `==`, `!=`, `in`, `notin`, exists, `!`, `>`, `<`; field
//!   selectors with `=`, `==`, `!=` on the fields the API server supports for the type — `metadata.name`
//!   and `metadata.namespace`, and e.g. `status.phase`, `spec.nodeName` of pods, `involvedObject.*` of
//!   core events, `regarding.*` of `events.k8s.io` events, `type` of secrets, a CRD's
//!   `selectableFields` — others get 400 worded as the API server words it; `resourceVersion` must be a
//!   number, `resourceVersionMatch` needs one, `Exact` lists the state at that version, rebuilt from the
//!   kept history (410 `Expired` once it is gone); `limit`/`continue` ignored: everything in one
//!   page), watch (resume from `resourceVersion` out of a bounded per-type history, else an ERROR event
//!   with a 410 `Expired` Status; when the version is absent or `0`, the current objects as ADDED first;
//!   streaming lists with `sendInitialEvents=true` need `resourceVersionMatch=NotOlderThan` and, with
//!   `allowWatchBookmarks=true`, end the initial events with a `k8s.io/initial-events-end` BOOKMARK;
//!   `allowWatchBookmarks=true` gets a BOOKMARK with the resourceVersion the watch has reached every minute
//!   ([`TestServer::set_bookmark_interval`]) and, like the API server, 2s before `timeoutSeconds` ends it
//!   if changes of its resource passed it by; [`TestServer::end_watches`] ends open
//!   watches, as an API server restart does; selector transitions become ADDED/DELETED like the watch cache), create (with
//!   `generateName`), replace (the body's name must be the URL's, 400; a custom resource's update over
//!   HTTP needs `metadata.resourceVersion`, 422), delete (answers with the object for pods, services,
//!   namespaces and CRDs, else a `Status` `Success` naming it, as the API server does; also
//!   delete-collection), patch (JSON merge,
//!   JSON patch, a strategic-merge subset for built-ins, server-side apply); any `dryRun` write runs
//!   against a throw-away copy of the state.
//! - **Subresources**: `status` (writes only `.status`; writes to the main resource keep the old status
//!   and creation drops it; pods, services, namespaces, deployments, statefulsets, replicasets, PDBs,
//!   HPAs, CRDs and CRD types that declare it) and `scale` (`autoscaling/v1` Scale for deployments,
//!   statefulsets, replicasets and CRDs that declare it).
//! - **Pod subresources** (core v1 pods only):
//!   - `POST pods/{name}/eviction` (body: a `policy/v1` Eviction; `kind`/`apiVersion` may be absent, as
//!     kube-rs sends it; `metadata.name` must be the pod's, else 400). Missing pod: 404. Pods in phase
//!     `Succeeded`, `Failed` or `Pending` (explicitly set; a pod without `status.phase` is not Pending here)
//!     are deleted without looking at budgets. Otherwise the PodDisruptionBudgets of the namespace whose
//!     non-empty `spec.selector` (matchLabels/matchExpressions) selects the pod are found: more than one
//!     answers 500 `This pod has more than one PodDisruptionBudget, which the eviction subresource does
//!     not support.`; for one, its budget is computed on the fly (there is no disruption controller):
//!     expected = pods its selector matches, healthy = those with condition `Ready=True`, desiredHealthy
//!     = `minAvailable` (int, or percent of expected rounded up) or expected - `maxUnavailable` (int or
//!     percent rounded up, at least 0; neither set: 0). A pod that is not Ready is evicted if
//!     `unhealthyPodEvictionPolicy` is `AlwaysAllow` or healthy >= desiredHealthy > 0 (the API server's
//!     rule; then only if the pod has not changed meanwhile, else 429 "still being processed"); otherwise
//!     healthy - desiredHealthy <= 0 answers 429 `TooManyRequests` `Cannot evict pod as it would violate
//!     the pod's disruption budget.` with cause `DisruptionBudget` `The disruption budget <name> needs
//!     <desiredHealthy> healthy pods and has <healthy> currently` (no `Retry-After`: kube-rs's default
//!     retry policy retries such 429s with backoff, use `Config::default_retry = false` to see them at
//!     once). Allowed: the pod is deleted (DELETED event) and the answer is 201 `Status` `Success`.
//!     `deleteOptions.preconditions` (uid, resourceVersion) are honoured (409); `dryRun` (query or
//!     `deleteOptions.dryRun`) deletes nothing. The budget's own `status` is neither read nor updated.
//!   - `GET pods/{name}/log`: `text/plain` from [`TestServer::set_pod_log`]. `container` is required when
//!     the pod has several containers (400 `a container name must be specified for pod <name>, choose one
//!     of: [...]`) and must be one of its (init, ephemeral) containers (400 `container <c> is not valid for
//!     pod <name>`); `previous=true` without a previous log: 400 `previous terminated container "<c>" in
//!     pod "<name>" not found`; no log set: empty. `tailLines` (last N lines) and `limitBytes` (first N
//!     bytes of that) work, negative values get 422; `timestamps`, `sinceSeconds`, `sinceTime` are
//!     ignored and `follow` returns what is set and ends.
//!   - `pods/resize` (Kubernetes 1.33 in-place resize): GET returns the pod; merge, JSON, strategic-merge
//!     patches, apply and PUT are applied to the whole pod, then, like the API server, everything but
//!     `resources` and `resizePolicy` of the containers (and init containers) is dropped silently; 422
//!     Invalid for added, removed, renamed or reordered containers, removed requests or limits, changes to
//!     anything but cpu and memory (`spec: Forbidden: only cpu and memory resources are mutable`,
//!     including `resizePolicy`), a request above its limit, resources of non-sidecar init containers, or
//!     a QoS class change (`Pod QOS Class may not change as a result of resizing`). `managedFields` record
//!     `subresource: resize`. [`TestServer::disable_resize`] makes it answer 404 and leaves it out of
//!     discovery, like a cluster before 1.33.
//!   - `pods/exec` over WebSocket (GET, as kube-rs and kubectl send it, or POST with `Upgrade:
//!     websocket`), subprotocol `v5.channel.k8s.io` or `v4.channel.k8s.io` (others: 400; no upgrade: 400
//!     `Upgrade request required`); query `command` (repeated), `container`, `stdin`, `stdout`, `stderr`,
//!     `tty`. Missing pod: 404, bad container: 400 (as for logs), none of stdin/stdout/stderr: 400, all
//!     before upgrading. The handler set with [`TestServer::set_exec_handler`] gets an [`ExecRequest`]
//!     and returns an [`ExecResult`]: the server opens the stdout/stderr/error channels, waits out its
//!     `delay`, sends stdout on channel 1 and stderr on channel 2 (with `tty`: both on 1), then the
//!     kubelet's `Status` on channel 3 (`Success`, or `Failure`/`NonZeroExitCode` with cause `ExitCode`
//!     `<code>`) and closes normally (1000). Without a handler: exit code 126, stderr `no exec handler`.
//!     stdin and terminal resizes are read and discarded.
//! - **Metadata**: `resourceVersion` is one global counter; `generation` starts at 1 and is bumped when
//!   anything but `metadata`/`status` changes (the CRD rule); `uid`; `creationTimestamp` (RFC 3339).
//!   Writes that change nothing are no-ops (no new resourceVersion, no watch event, `managedFields`
//!   untouched). A write whose body carries a stale `metadata.resourceVersion` gets 409 Conflict.
//! - **`managedFields`** record who wrote an object and when. Every create, update, patch or apply that
//!   changes an object sets or refreshes one entry per (manager, operation, subresource): `manager`,
//!   `operation` (`Apply` for server-side apply, else `Update`), `apiVersion` (of the request), `time` (RFC
//!   3339, seconds), `fieldsType: FieldsV1`, `fieldsV1` (see below), and `subresource` (`status`, `scale`) for
//!   subresource writes; entries are sorted like the API server does (operation, time, manager). The
//!   manager is the `fieldManager` parameter (at most 128 printable bytes, else 422), else the
//!   User-Agent up to its first `/` (`kubectl/v1.33.0 (...)` gives `kubectl`; kubectl itself passes
//!   `kubectl-client-side-apply`, `kubectl-edit`, ...), else `unknown` (kube-rs sends no User-Agent, so
//!   give `PostParams`/`PatchParams` a `field_manager`). Direct writes through [`TestServer::create`],
//!   [`TestServer::replace`] and [`TestServer::patch_status`] are by [`TEST_MANAGER`] (`testserver`); the
//!   namespaces that exist from the start by `kube-apiserver`. Only appliers' ownership is tracked: an
//!   `Apply` entry's `fieldsV1` is the field set of the manager's last applied configuration (`f:` fields,
//!   `k:{"type":"Ready"}` list-map elements with `.`, atomic lists and empty maps as `{}`, empty list-maps
//!   not at all; `apiVersion`, `kind`, the metadata map itself and server-set metadata left out), less
//!   the fields forced applies took from it; an applier left owning nothing has no entry.
//!   `Update` entries have `fieldsV1: {}` and are never dropped for owning nothing. When an apply drops a field that the manager applied before, the field is removed unless
//!   another applier (of any subresource) still applies it: a co-owned field stays and only the dropping
//!   manager's ownership ends (for a dropped map or list-map element, only the fields nobody else applies
//!   go). Fields set by `Update` writes do not keep a dropped field, but an `Update` write takes every
//!   field it changes, adds or removes away from the appliers (as in Kubernetes, where updates always
//!   force): dropping it from a later apply then removes nothing, and applying it again conflicts with
//!   nobody (a lease an update cleared can be applied by another holder). `managedFields` in request
//!   bodies are ignored. A write that changes nothing is a no-op, except an apply that changes what its manager owns
//!   (a first apply by a new manager, or a co-owned field dropped): that is recorded with a new
//!   resourceVersion, as in Kubernetes. `kubectl get -o yaml` hides them
//!   as usual; `--show-managed-fields` shows them.
//! - **Clock**: every time the server stamps (`creationTimestamp`, `managedFields[].time`, CRD condition
//!   times, metrics timestamps) and the "now" of table ages come from one clock: real time unless a test
//!   sets a source ([`TestServer::set_clock`]) or moves it forward ([`TestServer::advance_clock`];
//!   [`TestServer::now`] reads it, [`TestServer::reset_clock`] returns to real time).
//! - **Server-side apply**, simplified: the server remembers the last configuration each field manager
//!   applied per object and subresource; fields applied before but omitted now are removed, then the new
//!   configuration is merged in (list-maps by key, see below; other lists replaced). A field another
//!   applier co-owns is kept (see `managedFields`). **Conflicts**: an apply that adds or changes a field
//!   (a scalar, an atomic list, a list-map element) that another applier owns, of any subresource, is
//!   refused with 409 `Conflict`, message `Apply failed with 1 conflict: conflict with "mgr": .spec.x`
//!   (several: `Apply failed with 3 conflicts: conflicts with "a":\n- .spec.size\n- .spec.x\nconflicts
//!   with "c":\n- .spec.settings.c`, by manager; list-map elements as `.spec.conditions[type="Ready"]`)
//!   and one `details.causes` entry per field (`reason: FieldManagerConflict`, `message: conflict with
//!   "mgr"`, `field`; a manager that applied through a subresource is `"mgr" with subresource
//!   "status"`, as the API server names it); setting the value the field already has is no conflict (both own it then). With
//!   `force=true` the applier takes the fields over: they leave the other appliers' entries (and their
//!   remembered configurations, so dropping them later removes nothing of the new owner's). Fields set
//!   by `Update` writes never conflict, since their ownership is not tracked (the appliers lose them,
//!   see `managedFields`). `testserver/src/tests/smd.rs`
//!   checks all of this against Kubernetes' own structured-merge-diff library (`smd-apply`, built by
//!   `make tools`) on a table of apply sequences; `null` values in applied configurations are ignored
//!   here (structured-merge-diff owns them) and list-map element order is not compared.
//! - **List-map keys** (strategic merge and apply): `containers`, `initContainers`, `ephemeralContainers`,
//!   `env`, `volumes`, `volumeMounts`, `imagePullSecrets` by `name`; `ports` by `containerPort` (or
//!   `port` for service ports); `conditions` by `type`; `ownerReferences` by `uid`.
//! - **Tables** (`Accept: ...;as=Table;g=meta.k8s.io`) for get, list and watch: Name, the CRD's
//!   printer columns (JSONPath subset, `date` columns as ages), Age (unless the CRD has an Age column);
//!   events get the API server's event columns (LAST SEEN, TYPE, REASON, OBJECT, MESSAGE; with `-o wide`
//!   SUBOBJECT, SOURCE, FIRST SEEN, COUNT, NAME).
//! - **Metadata only** (`Accept: application/json;as=PartialObjectMetadata[List];g=meta.k8s.io;v=v1`, as
//!   kube's `Api<PartialObjectMeta<_>>` asks) for get, list and watch: `meta.k8s.io/v1`
//!   `PartialObjectMetadata` objects (lists: `PartialObjectMetadataList`) with only `apiVersion`, `kind`
//!   and `metadata`.
//! - **Errors** as `Status` objects: 400, 404, 405, 409 (AlreadyExists / Conflict), 410, 415, 422, and
//!   for evictions 429 (TooManyRequests) and 500. Errors about one object (404, 409) name it in
//!   `details` (`name`, `group` unless core, `kind` = the plural), as the API server does.
//! - **Resource metrics** (`metrics.k8s.io/v1beta1`, as metrics-server serves it), off until
//!   [`TestServer::enable_metrics_api`]: until then the group is absent from `/apis` and its paths answer
//!   404. Enabled: discovery (`pods` kind `PodMetrics`, `nodes` kind `NodeMetrics`, verbs get and list),
//!   `GET /apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods[/{name}]` and `.../v1beta1/pods` (all
//!   namespaces) serving what [`TestServer::set_pod_metrics`] set: `metadata` (name, namespace,
//!   `creationTimestamp` = now, the pod's labels if the pod exists), `timestamp` = now, `window` = `30s`,
//!   `containers: [{name, usage: {cpu, memory}}]`; `labelSelector` (on those labels) and `fieldSelector`
//!   work. Writes and watch get 405; `nodes` is an empty list. `kubectl top pod` works against it.
//! - **Observation and faults**: every request is recorded ([`TestServer::requests`]); a hook
//!   ([`TestServer::set_fault_hook`]) can answer any request with an error `Status` instead, throttle
//!   it (429 `TooManyRequests` with `Retry-After`, as priority and fairness does), serve it late, or
//!   serve it at once and hold the answer back (a write that took effect but whose client never
//!   heard); live watch events can be delivered late, like a lagging watch cache
//!   ([`TestServer::set_watch_lag`]); [`TestServer::set_reachable`] cuts every connection and
//!   closes new ones until it is switched back (an API server that is down or partitioned away).
//!
//! - **Admission of custom resources** written over HTTP (create, replace, patch, apply; main resource
//!   and subresources): fields the CRD's schema does not declare are pruned (kept below
//!   `x-kubernetes-preserve-unknown-fields`; `metadata` keeps only `ObjectMeta`'s fields; those the
//!   stored object already has survive, as the API server prunes only the request; `null` is kept
//!   where the schema says `nullable` and dropped elsewhere) —
//!   `fieldValidation=Strict` refuses them (400 `Kind in version "v" cannot be handled as a Kind:
//!   strict decoding error: unknown field "spec.x"`), `Warn` (the default) names each in a
//!   `Warning: 299 - …` header, `Ignore` says nothing; then the object is checked against the schema
//!   (types, `enum`, bounds, `pattern`, lengths, item counts, `required`) and its CEL
//!   `x-kubernetes-validations` rules (with `oldSelf` on updates): 422 `Invalid`, `Kind.group "name"
//!   is invalid: field: …` with one cause per problem (`FieldValueInvalid`, `FieldValueTypeInvalid`,
//!   `FieldValueRequired`, `FieldValueNotSupported`, `FieldValueTooLong`, `FieldValueTooMany`), worded
//!   as Kubernetes 1.36 words them, and the object's name, group and kind in `details`, as kubectl
//!   prints them. As in the API server, the CEL rules are not evaluated when the schema found a wrong
//!   type, an unsupported or missing value, or a string or list too long (a `<nil>` cause says that
//!   "some validation rules were not checked"); beside other schema errors (bounds, patterns)
//!   they are not evaluated either, unlike in the API server (see `README.md`). Updates ratchet as
//!   the API server has since 1.30: a schema violation whose value did not change is let through; a
//!   CEL violation only when its
//!   top-level section (`spec`, `status`) did not change, which is stricter than the API server's
//!   per-rule ratcheting. Writes through [`TestServer::create`], [`TestServer::replace`] and
//!   [`TestServer::patch_status`] are not admitted: they put objects straight into storage, as an
//!   object admitted under an older schema would be.
//!
//! # Deliberately skipped
//! Authentication and authorization, admission webhooks, defaulting, validation of built-in kinds
//! (and of events), ETags and gzip for `/openapi`, duplicate-field detection of `fieldValidation`,
//! version conversion (but for events), garbage collection and owner references,
//! finalizers and `deletionTimestamp` (deletes are immediate), ownership of fields set by `Update`
//! writes (their `fieldsV1` is `{}`, so applies never conflict with them), set-lists (`finalizers` is
//! atomic here, not `v:` elements), list-map keys from a CRD's schema (the fixed keys below are used),
//! pagination, aggregated discovery, controllers (nothing creates pods for a
//! deployment or updates status on its own: PDB and HPA status is whatever a test writes, and evictions
//! compute budgets themselves), the pod subresources `attach`, `portforward`, `proxy`, `binding` and
//! `ephemeralcontainers`, SPDY for exec (WebSocket only; no fallback), a node for exec and logs (no
//! `spec.nodeName` needed), pod-level resources and the memory-limit rules of resize (no resize status
//! or conditions are set either), and protobuf: protobuf bodies get 415, so kubectl's typed
//! generators (`kubectl create configmap`, `kubectl run`, ...) fail, while `kubectl apply`,
//! `kubectl create -f`, `patch`, `scale`, `rollout restart`, `delete` and `get` send JSON and work.
//!
//! `README.md` lists the differences from kube-apiserver that refereeing against it
//! (`tests/cluster/referee.rs`) found and that are kept, and why.

#![forbid(unsafe_code)]
#![warn(missing_docs, clippy::unwrap_used)]

pub mod admission;
mod convert;
pub mod error;
mod eviction;
mod exec;
mod fields;
mod http;
pub mod jsonpath;
mod metrics;
mod openapi;
mod openapi_v2;
mod options;
mod outage;
pub mod patch;
mod pods;
pub mod registry;
mod resize;
pub mod selector;
pub mod store;
pub mod table;
mod view;
mod watch;

use std::net::SocketAddr;
use std::sync::{Arc, PoisonError};

use serde_json::Value;

pub use error::ApiError;
pub use exec::{ExecRequest, ExecResult};

use crate::http::Shared;
use crate::store::{PatchType, Sub};

/// The field manager of direct writes through [`TestServer::create`], [`TestServer::replace`] and
/// [`TestServer::patch_status`].
pub const TEST_MANAGER: &str = "testserver";

/// One HTTP request the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, `PUT`, `PATCH`, `DELETE`, ...
    pub method: String,
    /// URL path, e.g. `/apis/apps/v1/namespaces/default/deployments/web/status`.
    pub path: String,
    /// Raw query string without `?` (e.g. `watch=true&resourceVersion=12`), "" if none.
    pub query: String,
    /// `Content-Type` header (tells the patch flavour).
    pub content_type: Option<String>,
    /// HTTP status answered; 0 while the request is being served (and while the fault hook looks at it).
    pub status: u16,
}

impl RecordedRequest {
    /// Whether this request could change state (POST, PUT, PATCH, DELETE).
    pub fn is_write(&self) -> bool {
        matches!(self.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE")
    }

    /// Whether this is a watch.
    pub fn is_watch(&self) -> bool {
        self.query.split('&').any(|p| p == "watch=true" || p == "watch=1")
    }
}

/// An injected failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with a Kubernetes `Status` error instead of serving the request.
    Status {
        /// HTTP status code, e.g. 500.
        code: u16,
        /// `StatusReason`, e.g. `InternalError`.
        reason: String,
        /// Message.
        message: String,
    },
    /// Serve the request normally, but only after this long (a slow API server).
    Delay(std::time::Duration),
    /// Serve the request at once (its effect is stored and watched), but hold the answer back this
    /// long: a client stopped meanwhile never learns that its write succeeded.
    AnswerLate(std::time::Duration),
    /// Answer 429 `TooManyRequests` with a `Retry-After` header of this many seconds, as the API
    /// server's priority and fairness does when a request is throttled.
    Throttle {
        /// The `Retry-After` header and `details.retryAfterSeconds`.
        retry_after_seconds: u32,
    },
}

struct Guard {
    stop: tokio::sync::watch::Sender<bool>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// A running test server. Clones share the server; it stops serving when the last clone is dropped or
/// [`TestServer::shutdown`] is called.
#[derive(Clone)]
pub struct TestServer {
    shared: Arc<Shared>,
    guard: Arc<Guard>,
    addr: SocketAddr,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl TestServer {
    /// Start on `127.0.0.1` on a free port, serving on the current tokio runtime.
    pub async fn start() -> std::io::Result<TestServer> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Start on the given address, serving on the current tokio runtime.
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<TestServer> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let (reachable, reachable_rx) = tokio::sync::watch::channel(true);
        let shared = Arc::new(Shared {
            store: store::Store::new(),
            requests: std::sync::Mutex::new(Vec::new()),
            hook: std::sync::Mutex::new(None),
            shutdown: stop_rx.clone(),
            address: addr.to_string(),
            metrics: metrics::Metrics::default(),
            pods: pods::PodExtras::default(),
            watch_lag: std::sync::Mutex::new(std::time::Duration::ZERO),
            bookmark_interval: std::sync::Mutex::new(watch::DEFAULT_BOOKMARK_INTERVAL),
            cut_watches: tokio::sync::watch::Sender::new(0),
            reachable,
        });
        let app = axum::Router::new()
            .fallback(http::handle)
            .with_state(shared.clone());
        let mut signal = stop_rx;
        tokio::spawn(async move {
            let listener = outage::Switched::new(listener, reachable_rx);
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = signal.wait_for(|stop| *stop).await;
            });
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "test server stopped with an error");
            }
        });
        Ok(TestServer {
            shared,
            guard: Arc::new(Guard { stop }),
            addr,
        })
    }

    /// Stop serving (also ends open watches). Idempotent.
    pub fn shutdown(&self) {
        let _ = self.guard.stop.send(true);
    }

    /// The address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig (YAML) for this server: cluster, user and context `testserver`, namespace `default`,
    /// no authentication.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\n\
             kind: Config\n\
             clusters:\n\
             - name: testserver\n  cluster:\n    server: {url}\n\
             users:\n\
             - name: testserver\n  user: {{}}\n\
             contexts:\n\
             - name: testserver\n  context:\n    cluster: testserver\n    user: testserver\n    namespace: default\n\
             current-context: testserver\n\
             preferences: {{}}\n",
            url = self.url()
        )
    }

    /// Create an object; `apiVersion`, `kind` and `metadata.namespace` (default `default`) decide where.
    /// Like a POST: status is dropped for types with a status subresource (use [`Self::patch_status`]).
    /// Recorded in `managedFields` as an `Update` by [`TEST_MANAGER`].
    pub fn create(&self, obj: Value) -> Result<Value, ApiError> {
        self.shared.store.create_by_kind(obj, TEST_MANAGER)
    }

    /// Get an object (None if absent or the type is unknown).
    pub fn get(&self, api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        let rt = self.shared.store.resolve_kind(api_version, kind).ok()?;
        self.shared.store.get(&rt, namespace, name).ok()
    }

    /// List objects of a type, in one namespace or (None) all.
    pub fn list(&self, api_version: &str, kind: &str, namespace: Option<&str>) -> Vec<Value> {
        let Ok(rt) = self.shared.store.resolve_kind(api_version, kind) else {
            return Vec::new();
        };
        let filter = store::Filter {
            namespace: namespace.map(str::to_string),
            ..Default::default()
        };
        self.shared.store.list(&rt, &filter).0
    }

    /// Replace an object like a PUT (409 if its `metadata.resourceVersion` is set and stale; `.status` is
    /// kept for types with a status subresource). A change is recorded in `managedFields` as an `Update`
    /// by [`TEST_MANAGER`].
    pub fn replace(&self, obj: Value) -> Result<Value, ApiError> {
        let (rt, ns) = self.shared.store.locate(&obj)?;
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::invalid("metadata.name: Required value"))?
            .to_string();
        self.shared
            .store
            .replace(&rt, ns.as_deref(), &name, Sub::Main, obj, TEST_MANAGER)
    }

    /// JSON-merge-patch the status subresource. `merge_patch` is an object-level patch, as with
    /// `kube::Api::patch_status`: `{"status": {...}}`; only its `.status` takes effect. For types without a
    /// status subresource the patch applies to the whole object. A change is recorded in `managedFields`
    /// as an `Update` by [`TEST_MANAGER`] (with `subresource: status` for a status subresource).
    pub fn patch_status(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        merge_patch: Value,
    ) -> Result<Value, ApiError> {
        let store = &self.shared.store;
        let rt = store.resolve_kind(api_version, kind)?;
        let sub = if rt.has_status { Sub::Status } else { Sub::Main };
        store.patch(
            &rt,
            namespace,
            name,
            sub,
            &PatchType::Merge,
            &merge_patch,
            TEST_MANAGER,
        )
    }

    /// Delete an object; returns it.
    pub fn delete(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        let rt = self.shared.store.resolve_kind(api_version, kind)?;
        self.shared.store.delete(&rt, namespace, name)
    }

    /// Serve `metrics.k8s.io/v1beta1` (discovery, and get and list of `pods` and `nodes`) from now on.
    /// Off by default: then the group is absent from `/apis` and its paths answer 404, like a cluster
    /// without metrics-server. It cannot be switched off again (start another server for that).
    pub fn enable_metrics_api(&self) {
        self.shared.metrics.enable();
    }

    /// Set (replace) the usage reported for a pod, as `(container name, cpu quantity, memory quantity)`,
    /// e.g. `("web", "250m", "128Mi")`. Quantities are served as given. The pod need not exist; when it
    /// does, its labels are served (and used by label selectors).
    pub fn set_pod_metrics(&self, namespace: &str, pod: &str, containers: &[(&str, &str, &str)]) {
        self.shared.metrics.set_pod(namespace, pod, containers);
    }

    /// Stop reporting usage for a pod (its PodMetrics then answers 404 and leaves lists).
    pub fn clear_pod_metrics(&self, namespace: &str, pod: &str) {
        self.shared.metrics.clear_pod(namespace, pod);
    }

    /// Set (replace) what `GET .../pods/{pod}/log?container={container}` serves for a container; with
    /// `previous` the log of its previous, terminated instance (`previous=true`). Kept apart from the pod
    /// object: it need not exist yet, and deleting or recreating it keeps the logs.
    pub fn set_pod_log(&self, namespace: &str, pod: &str, container: &str, previous: bool, text: &str) {
        self.shared
            .pods
            .set_log(namespace, pod, container, previous, text);
    }

    /// Answer `pods/exec` with `handler`: it gets the pod, container and command of each exec and returns
    /// what to send on stdout and stderr, the exit code and an optional delay before answering. It runs
    /// without locks held. Without a handler every exec exits with code 126 and stderr `no exec handler`.
    pub fn set_exec_handler(&self, handler: impl Fn(&ExecRequest) -> ExecResult + Send + Sync + 'static) {
        self.shared.pods.set_exec_handler(Some(Arc::new(handler)));
    }

    /// Remove the exec handler.
    pub fn clear_exec_handler(&self) {
        self.shared.pods.set_exec_handler(None);
    }

    /// Serve no `pods/resize` from now on, like a cluster before Kubernetes 1.33: it answers 404 and is
    /// absent from discovery. It cannot be switched on again (start another server for that).
    pub fn disable_resize(&self) {
        self.shared.pods.disable_resize();
    }

    /// The server's current time (see [`Self::set_clock`]).
    pub fn now(&self) -> jiff::Timestamp {
        self.shared.store.now()
    }

    /// Take the server's time from `clock` from now on (and forget any [`Self::advance_clock`] offset).
    /// It stamps `creationTimestamp`, `managedFields[].time`, CRD condition times and metrics
    /// timestamps, and is the "now" of table ages. It is called without locks held. Default: real time.
    pub fn set_clock(&self, clock: impl Fn() -> jiff::Timestamp + Send + Sync + 'static) {
        self.shared.store.clock().set(Arc::new(clock));
    }

    /// Move the server's clock forward by `by` (cumulative; on top of real time or [`Self::set_clock`]).
    pub fn advance_clock(&self, by: std::time::Duration) {
        self.shared.store.clock().advance(by);
    }

    /// Back to real time with no offset.
    pub fn reset_clock(&self) {
        self.shared.store.clock().reset();
    }

    /// Forget the watch history: watches resuming from an older resourceVersion then get 410 Gone.
    pub fn compact_history(&self) {
        self.shared.store.compact();
    }

    /// The current (global) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.store.resource_version()
    }

    /// Wakes on every change to the stored objects from now on: a test waits on the server's
    /// state by checking it after each change, not by polling it.
    pub fn changes(&self) -> Changes {
        Changes(self.shared.store.changes())
    }

    /// Every HTTP request so far, in order of arrival; one still being served has `status` 0.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(rec, answered)| RecordedRequest {
                status: answered.load(std::sync::atomic::Ordering::SeqCst),
                ..rec.clone()
            })
            .collect()
    }

    /// Forget the recorded requests.
    pub fn clear_requests(&self) {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Install a hook that sees every request before it is served; `Some(fault)` answers with that instead.
    pub fn set_fault_hook(&self, hook: impl Fn(&RecordedRequest) -> Option<Fault> + Send + Sync + 'static) {
        *self.shared.hook.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(hook));
    }

    /// Deliver live watch events `lag` late, like an API server whose watch cache lags behind its
    /// writes: a client then reads its own writes back later than the write's response.
    pub fn set_watch_lag(&self, lag: std::time::Duration) {
        *self
            .shared
            .watch_lag
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = lag;
    }

    /// How often watches that allow bookmarks (`allowWatchBookmarks=true`) get a BOOKMARK with the
    /// resourceVersion they have reached (one minute unless set; for watches opened afterwards).
    pub fn set_bookmark_interval(&self, every: std::time::Duration) {
        *self
            .shared
            .bookmark_interval
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = every;
    }

    /// End every open watch, as an API server restart does: clients resume from the last resourceVersion
    /// they saw, or get 410 Gone and relist if [`Self::compact_history`] dropped it.
    pub fn end_watches(&self) {
        self.shared.cut_watches.send_modify(|n| *n += 1);
    }

    /// Makes the server unreachable (`false`) or reachable again (`true`), like a network partition
    /// or an API server that is down: while unreachable, every open connection is cut (watches
    /// included; the client's next read or write fails) and new connections are closed as soon as
    /// they are accepted, so clients see transport errors rather than HTTP answers. The state is kept.
    pub fn set_reachable(&self, reachable: bool) {
        self.shared.reachable.send_replace(reachable);
        if !reachable {
            self.end_watches();
        }
    }

    /// Remove the fault hook.
    pub fn clear_fault_hook(&self) {
        *self.shared.hook.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

#[cfg(test)]
mod tests;

/// Changes to the stored objects, from [`TestServer::changes`].
pub struct Changes(tokio::sync::broadcast::Receiver<Arc<store::Event>>);

impl Changes {
    /// Returns once something changed since the last call (or since this was made); changes
    /// missed while the receiver lagged count as one.
    pub async fn next(&mut self) {
        use tokio::sync::broadcast::error::RecvError;
        match self.0.recv().await {
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            // The store is gone with the server: nothing will change again.
            Err(RecvError::Closed) => std::future::pending().await,
        }
    }
}
