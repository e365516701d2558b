//! Whether every cache has been filled, told to any number of waiters.
//!
//! kube-runtime's `Store::wait_until_ready` wakes only the last of several tasks that wait on the
//! same store at once (it polls a oneshot receiver, which keeps a single waker), and the
//! controller itself waits on its policy store that way before its first reconcile. A second
//! waiter — the readiness task — could sleep for good, and the operator would never report ready.
//! So no one here waits on a store: each cache's watch stream says when its first list is in
//! (`InitDone`), and everything that needs the caches waits on [`Synced`].

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicUsize, Ordering},
};

use kube::runtime::watcher;
use tokio::sync::watch;

#[derive(Clone)]
pub(super) struct Synced(watch::Receiver<bool>);

/// One cache's part: told of its watch's events, it counts the cache as filled at its first
/// `InitDone`.
pub(super) struct Filled {
    done: AtomicBool,
    remaining: Arc<AtomicUsize>,
    tx: Arc<watch::Sender<bool>>,
}

impl Synced {
    /// Not filled yet, and one [`Filled`] for each of `N` caches.
    pub(super) fn new<const N: usize>() -> (Self, [Filled; N]) {
        let (tx, rx) = watch::channel(N == 0);
        let (remaining, tx) = (Arc::new(AtomicUsize::new(N)), Arc::new(tx));
        let parts = std::array::from_fn(|_| Filled {
            done: AtomicBool::new(false),
            remaining: remaining.clone(),
            tx: tx.clone(),
        });
        (Synced(rx), parts)
    }

    /// Already filled (tests that build an index by hand).
    #[cfg(test)]
    pub(super) fn filled() -> Self {
        Self::new::<0>().0
    }

    /// Whether every cache is filled now.
    pub(super) fn is_filled(&self) -> bool {
        *self.0.borrow()
    }

    /// Waits until every cache is filled: true, or false if that can no longer happen (every
    /// watch stream was dropped first, at shutdown).
    pub(super) async fn wait(&self) -> bool {
        self.0.clone().wait_for(|filled| *filled).await.is_ok()
    }
}

impl Filled {
    /// A cache this scope does not keep: counted as filled at once.
    pub(super) fn not_kept(&self) {
        self.observe::<()>(&watcher::Event::InitDone);
    }

    pub(super) fn observe<K>(&self, event: &watcher::Event<K>) {
        if matches!(event, watcher::Event::InitDone)
            && !self.done.swap(true, Ordering::SeqCst)
            && self.remaining.fetch_sub(1, Ordering::SeqCst) == 1
        {
            self.tx.send_replace(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use k8s_openapi::api::core::v1::ConfigMap;

    use super::*;

    fn event(done: bool) -> watcher::Event<ConfigMap> {
        if done {
            watcher::Event::InitDone
        } else {
            watcher::Event::Init
        }
    }

    /// Several tasks wait at once (reconciles and the readiness task at startup): all of them are
    /// woken when the last cache fills, not before.
    #[tokio::test(start_paused = true)]
    async fn every_waiter_is_woken_when_the_last_cache_fills() {
        let (synced, parts) = Synced::new::<2>();
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let synced = synced.clone();
                tokio::spawn(async move { synced.wait().await })
            })
            .collect();
        tokio::task::yield_now().await;
        parts[0].observe(&event(false));
        parts[0].observe(&event(true));
        // The same cache listed again (a relist) does not count twice.
        parts[0].observe(&event(true));
        tokio::task::yield_now().await;
        assert!(
            waiters.iter().all(|w| !w.is_finished()),
            "woken before the last cache filled"
        );
        assert!(!*synced.0.borrow());
        parts[1].observe(&event(true));
        for waiter in waiters {
            let woken = tokio::time::timeout(Duration::from_secs(60), waiter).await;
            assert!(matches!(woken, Ok(Ok(true))), "a waiter was not woken: {woken:?}");
        }
        // Late waiters return at once.
        assert!(synced.wait().await);
    }

    #[tokio::test(start_paused = true)]
    async fn caches_whose_watches_are_gone_never_fill() {
        let (synced, parts) = Synced::new::<1>();
        drop(parts);
        let answer = tokio::time::timeout(Duration::from_secs(60), synced.wait()).await;
        assert_eq!(answer.ok(), Some(false));
    }
}
